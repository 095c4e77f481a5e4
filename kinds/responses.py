"""LLM responses (a TextArea answering a Text): exported as prompt/response pairs so far."""
from __future__ import annotations

from labelloop.label_config.regions import textarea_text
from labelloop.label_config.spec import ResponseSpec
from labelloop.model.export.formats import Example

from .base import ProjectKind, finished_annotation


class ResponseKind(ProjectKind):
    name = "llm"
    title = "LLM response (Supervised LLM Fine-tuning)"
    spec_type = ResponseSpec

    def example(self, task: dict, spec: ResponseSpec, *, audit_label=None):
        """The prompt from the task data, the response from the latest finished annotation."""
        annotation = finished_annotation(task)
        if annotation is None:
            return None, None
        response = textarea_text(annotation.get("result"), spec)
        if response is None:
            return None, "empty response"
        return Example(task["id"], (task.get("data") or {}).get(spec.prompt_key), response=response), None
