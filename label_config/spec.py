"""What labelloop needs to know about a project's label config, parsed with the SDK's `label_interface`,
and the Choices region format that annotations and predictions share."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Sequence

from labelloop.model.errors import LabelloopError

_TEXT_OBJECTS = ("Text", "HyperText")


class UnsupportedLabelConfig(LabelloopError):
    """The label config has nothing labelloop can prelabel (or is not valid XML)."""


@dataclass(frozen=True)
class ClassificationSpec:
    """A Choices control over a Text object.

    ``from_name``/``to_name`` go into every result; ``value_key`` is the task data field
    (``$text`` -> ``"text"``); ``labels`` are the Choice values in config order.
    """

    from_name: str
    to_name: str
    value_key: str
    labels: tuple[str, ...]
    multi_label: bool

    @property
    def kind(self) -> str:
        return "multi_label" if self.multi_label else "single_label"


def _interface(config: str):
    """The SDK's `LabelInterface` for ``config``, or `UnsupportedLabelConfig` saying why not."""
    from label_studio_sdk.label_interface import LabelInterface

    if not isinstance(config, str) or not config.strip():
        raise UnsupportedLabelConfig("the project has no label config")
    try:
        return LabelInterface(config)
    except Exception as exc:  # the SDK raises several XML and validation error types
        raise UnsupportedLabelConfig(f"the label config could not be parsed: {exc}") from exc


def parse_label_config(config: str) -> ClassificationSpec:
    """Find the first Choices/Text pair in ``config``.

    Raises `UnsupportedLabelConfig` with a message meant for the Label Studio user.
    Cached: Label Studio sends the same config with every request.
    """
    if not isinstance(config, str):  # a request body can hold anything; the cache needs a str
        raise UnsupportedLabelConfig(f"the label config must be XML text, not {type(config).__name__}")
    return _parse_classification(config)


@functools.lru_cache(maxsize=256)
def _parse_classification(config: str) -> ClassificationSpec:
    interface = _interface(config)
    try:
        from_name, to_name, value_key = interface.get_first_tag_occurence("Choices", _TEXT_OBJECTS)
    except ValueError:
        controls = sorted({c.tag for c in interface.controls}) or ["none"]
        raise UnsupportedLabelConfig(
            "labelloop prelabels text classification: the label config needs a <Choices> control "
            f"with toName pointing at a <Text> object (found controls: {', '.join(controls)})"
        ) from None
    control = interface.get_control(from_name)
    labels = tuple(str(label) for label in control.labels)
    if not labels:
        raise UnsupportedLabelConfig(f"<Choices name=\"{from_name}\"> has no <Choice> values")
    if len(set(labels)) != len(labels):
        raise UnsupportedLabelConfig(f"<Choices name=\"{from_name}\"> repeats a Choice value")
    if not value_key:
        raise UnsupportedLabelConfig(f"<Text name=\"{to_name}\"> has no value such as \"$text\"")
    multi = str(control.attr.get("choice", "single")).lower() == "multiple"
    return ClassificationSpec(from_name, to_name, value_key, labels, multi)


def choices_result(spec: ClassificationSpec, chosen: Sequence[str]) -> dict:
    """One Label Studio result region that picks ``chosen`` in the spec's Choices control."""
    return {
        "from_name": spec.from_name,
        "to_name": spec.to_name,
        "type": "choices",
        "value": {"choices": list(chosen)},
    }


def chosen_labels(result, spec: ClassificationSpec) -> tuple[str, ...]:
    """The labels an annotation's ``result`` list picks in the spec's Choices control (may be empty)."""
    chosen: list[str] = []
    for region in result or ():
        if isinstance(region, dict) and region.get("from_name") == spec.from_name \
                and region.get("type", "choices").lower() == "choices":
            chosen.extend(str(c) for c in (region.get("value") or {}).get("choices") or ())
    return tuple(dict.fromkeys(chosen))


# What `labelloop export` reads. Each spec names the control whose results hold the label.

@dataclass(frozen=True)
class ResponseSpec:
    """Supervised LLM fine-tuning: a TextArea (``from_name``) answering the Text ``prompt_key``."""

    from_name: str
    to_name: str
    prompt_key: str


@dataclass(frozen=True)
class SpanSpec:
    """NER: a Labels control marking spans of the Text ``value_key``."""

    from_name: str
    to_name: str
    value_key: str
    labels: tuple[str, ...]


@dataclass(frozen=True)
class PreferenceSpec:
    """Preference pairs: a Choices control whose choices (their ``alias``) name the Text objects
    holding the candidate answers. ``answers`` maps each choice to its task data field."""

    from_name: str
    prompt_key: str
    answers: tuple[tuple[str, str], ...]


def parse_project_config(config: str):
    """The spec `labelloop export` works from: `PreferenceSpec`, `ResponseSpec`, `SpanSpec` or
    `ClassificationSpec`, tried in that order.

    Raises `UnsupportedLabelConfig` with a message naming what is supported.
    """
    interface = _interface(config)
    texts = {o.name: o.value.lstrip("$") for o in interface.objects if o.tag in _TEXT_OBJECTS and o.value}
    for control in interface.controls:
        targets = [t for t in control.to_name if t in texts]
        if not targets:
            continue
        if control.tag == "Choices":
            answers = [label for label in control.labels if label in texts and label not in targets]
            if len(answers) >= 2 and len(answers) == len(control.labels):
                return PreferenceSpec(control.name, texts[targets[0]], tuple((a, texts[a]) for a in answers))
    for tag, build in (("TextArea", lambda c, t: ResponseSpec(c.name, t, texts[t])),
                       ("Labels", lambda c, t: SpanSpec(c.name, t, texts[t], tuple(map(str, c.labels))))):
        for control in interface.controls:
            targets = [t for t in control.to_name if t in texts]
            if control.tag == tag and targets:
                return build(control, targets[0])
    try:
        return parse_label_config(config)
    except UnsupportedLabelConfig:
        raise UnsupportedLabelConfig(
            "labelloop exports Supervised LLM Fine-tuning (TextArea over Text), preference pairs "
            "(Choices naming two answer Texts), NER (Labels over Text) and text classification (Choices over "
            f"Text); found controls: {', '.join(sorted({c.tag for c in interface.controls})) or 'none'}") from None


def textarea_text(result, spec: ResponseSpec) -> str | None:
    """The text an annotation's ``result`` writes in the spec's TextArea (lines joined), or None."""
    for region in result or ():
        if isinstance(region, dict) and region.get("from_name") == spec.from_name:
            text = (region.get("value") or {}).get("text")
            if isinstance(text, list):
                text = "\n".join(str(t) for t in text)
            if isinstance(text, str):
                return text
    return None


def labelled_spans(result, spec: SpanSpec) -> list[tuple[int, int, str]]:
    """``(start, end, label)`` character spans an annotation marks in the spec's Labels control, sorted."""
    spans = []
    for region in result or ():
        if not (isinstance(region, dict) and region.get("from_name") == spec.from_name):
            continue
        value = region.get("value") or {}
        start, end = value.get("start"), value.get("end")
        for label in value.get("labels") or ():
            if isinstance(start, int) and isinstance(end, int) and 0 <= start < end:
                spans.append((start, end, str(label)))
    return sorted(set(spans))
