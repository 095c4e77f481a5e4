"""Preference pairs (Choices naming two answer Texts): exported as chosen/rejected pairs."""
from __future__ import annotations

from labelloop.label_config.regions import chosen_labels
from labelloop.label_config.spec import PreferenceSpec
from labelloop.model.export.formats import Example

from .base import ProjectKind, finished_annotation


class PreferenceKind(ProjectKind):
    name = "preference"
    title = "preference pair"
    spec_type = PreferenceSpec

    def example(self, task: dict, spec: PreferenceSpec, *, audit_label=None):
        """The picked answer becomes the chosen response, the other one the rejected response."""
        annotation = finished_annotation(task)
        if annotation is None:
            return None, None
        data = task.get("data") or {}
        answers = dict(spec.answers)
        picked = [choice for choice in chosen_labels(annotation.get("result"), spec) if choice in answers]
        if not picked:
            return None, "no preferred answer chosen"
        other = next(key for choice, key in spec.answers if choice != picked[0])
        chosen, rejected = data.get(answers[picked[0]]), data.get(other)
        if not isinstance(chosen, str):
            return None, "empty response"
        if not isinstance(rejected, str):
            return None, "rejected response empty or the same as the chosen one"
        return Example(task["id"], data.get(spec.prompt_key), response=chosen, rejected=rejected), None
