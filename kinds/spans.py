"""Named entities (Labels spans over a Text): exported as span lists and CoNLL so far."""
from __future__ import annotations

from labelloop.label_config.regions import labelled_spans
from labelloop.label_config.spec import SpanSpec
from labelloop.model.export.formats import Example, RenderOptions

from .base import ProjectKind, finished_annotation


class SpanKind(ProjectKind):
    name = "ner"
    title = "NER span"
    spec_type = SpanSpec
    keep_offsets = True

    def example(self, task: dict, spec: SpanSpec, *, audit_label=None):
        """The text, verbatim, and the spans of the latest finished annotation that fit in it."""
        annotation = finished_annotation(task)
        if annotation is None:
            return None, None
        text = (task.get("data") or {}).get(spec.value_key)
        spans = tuple(labelled_spans(annotation.get("result"), spec, text)) if isinstance(text, str) else ()
        return Example(task["id"], text, spans=spans), None

    def render_options(self, spec: SpanSpec, *, system, instruction) -> RenderOptions:
        return RenderOptions(self.name, tuple(spec.labels), False, system, instruction)
