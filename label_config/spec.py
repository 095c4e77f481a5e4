"""What labelloop needs to know about a project's label config, parsed with the SDK's `label_interface`.

`parse_label_config` turns a config into one spec per project kind: `ClassificationSpec`
(Choices over Text), `SpanSpec` (Labels over Text), `ResponseSpec` (TextArea answering a Text)
or `PreferenceSpec` (Choices naming two answer Texts). Each spec's ``text_key`` is the task data
field that holds the text a model reads. The region formats live in `labelloop.label_config.regions`.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

from labelloop.model.errors import LabelloopError

_TEXT_OBJECTS = ("Text", "HyperText")


class UnsupportedLabelConfig(LabelloopError):
    """The label config has nothing labelloop can prelabel (or is not valid XML)."""


@dataclass(frozen=True)
class ClassificationSpec:
    """A Choices control over a Text object.

    ``from_name``/``to_name`` go into every result; ``value_key`` is the task data field
    (``$text`` -> ``"text"``); ``labels`` are the Choice values in config order.
    ``other_controls``: further Choices controls over text, which labelloop leaves alone.
    """

    from_name: str
    to_name: str
    value_key: str
    labels: tuple[str, ...]
    multi_label: bool
    other_controls: tuple[str, ...] = ()

    @property
    def text_key(self) -> str:
        return self.value_key


def _interface(config: str):
    """The SDK's `LabelInterface` for ``config``, or `UnsupportedLabelConfig` saying why not."""
    from label_studio_sdk.label_interface import LabelInterface

    if not isinstance(config, str) or not config.strip():
        raise UnsupportedLabelConfig("the project has no label config")
    try:
        return LabelInterface(config)
    except Exception as exc:  # the SDK raises several XML and validation error types
        raise UnsupportedLabelConfig(f"the label config could not be parsed: {exc}") from exc


def _classification(interface) -> ClassificationSpec:
    """The first Choices/Text pair, or `UnsupportedLabelConfig` saying what is missing."""
    try:
        from_name, to_name, value_key = interface.get_first_tag_occurence("Choices", _TEXT_OBJECTS)
    except ValueError:
        controls = sorted({c.tag for c in interface.controls}) or ["none"]
        raise UnsupportedLabelConfig(
            "text classification needs a <Choices> control with toName pointing at a <Text> object "
            f"(found controls: {', '.join(controls)})"
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
    texts = {o.name for o in interface.objects if o.tag in _TEXT_OBJECTS}
    others = tuple(c.name for c in interface.controls
                   if c.tag == "Choices" and c.name != from_name and any(t in texts for t in c.to_name))
    return ClassificationSpec(from_name, to_name, value_key, labels, multi, others)


# What `labelloop export` reads. Each spec names the control whose results hold the label.

@dataclass(frozen=True)
class ResponseSpec:
    """Supervised LLM fine-tuning: a TextArea (``from_name``) answering the Text ``prompt_key``.

    ``data_keys``: every task data field the config shows (what a prompt template may use);
    ``choices``: a Choices control over Text in the same config, prelabelled as well, or None.
    """

    from_name: str
    to_name: str
    prompt_key: str
    data_keys: tuple[str, ...] = ()
    choices: ClassificationSpec | None = None

    @property
    def text_key(self) -> str:
        return self.prompt_key


@dataclass(frozen=True)
class SpanSpec:
    """NER: a Labels control marking spans of the Text ``value_key``. ``other_controls``: further
    Labels controls of the config (labelloop prelabels one and says so)."""

    from_name: str
    to_name: str
    value_key: str
    labels: tuple[str, ...]
    other_controls: tuple[str, ...] = ()

    @property
    def text_key(self) -> str:
        return self.value_key


@dataclass(frozen=True)
class PreferenceSpec:
    """Preference pairs: a Choices control whose choices (their ``alias``) name the Text objects
    holding the candidate answers. ``answers`` maps each choice to its task data field;
    ``to_name`` is the Text the Choices points at (the prompt)."""

    from_name: str
    prompt_key: str
    answers: tuple[tuple[str, str], ...]
    to_name: str = ""

    @property
    def text_key(self) -> str:
        return self.prompt_key


Spec = ClassificationSpec | SpanSpec | ResponseSpec | PreferenceSpec


def parse_label_config(config: str) -> Spec:
    """The project kind's spec for ``config``: `PreferenceSpec`, `ResponseSpec`, `SpanSpec` or
    `ClassificationSpec`, tried in that order.

    Raises `UnsupportedLabelConfig` with a message meant for the Label Studio user, naming what
    is supported. Cached: Label Studio sends the same config with every request.
    """
    if not isinstance(config, str):  # a request body can hold anything; the cache needs a str
        raise UnsupportedLabelConfig(f"the label config must be XML text, not {type(config).__name__}")
    return _parse(config)


def _check_readable(interface, spec: Spec) -> Spec:
    """``spec``, or `UnsupportedLabelConfig` when the text it names is not in the task data as
    text labelloop can read: a URL the browser fetches, or XPath-addressed spans of HyperText."""
    objects = {o.name: o for o in interface.objects}
    if isinstance(spec, PreferenceSpec):
        names = [o.name for o in interface.objects if o.value and o.value.lstrip("$") == spec.prompt_key]
        names += [name for name, _ in spec.answers]
    else:
        names = [spec.to_name]
    for name in names:
        obj = objects.get(name)
        if obj is not None and str(obj.attr.get("valueType", "text")).lower() == "url":
            raise UnsupportedLabelConfig(
                f"<{obj.tag} name=\"{name}\"> loads its text from a URL in the browser (valueType=\"url\"), and "
                f"the ML backend cannot see it; put the text itself in the task data field {obj.value} and drop valueType")
    if isinstance(spec, SpanSpec) and objects[spec.to_name].tag != "Text":
        raise UnsupportedLabelConfig(
            f"NER spans over <{objects[spec.to_name].tag} name=\"{spec.to_name}\"> are addressed by XPath, which "
            "labelloop does not write; mark spans over a <Text> object")
    return spec


@functools.lru_cache(maxsize=256)
def _parse(config: str) -> Spec:
    interface = _interface(config)
    return _check_readable(interface, _spec(interface))


def _spec(interface) -> Spec:
    texts = {o.name: o.value.lstrip("$") for o in interface.objects if o.tag in _TEXT_OBJECTS and o.value}
    for control in interface.controls:
        targets = [t for t in control.to_name if t in texts]
        if not targets:
            continue
        if control.tag == "Choices":
            answers = [label for label in control.labels if label in texts and label not in targets]
            if len(answers) >= 2 and len(answers) == len(control.labels):
                return PreferenceSpec(control.name, texts[targets[0]], tuple((a, texts[a]) for a in answers),
                                      targets[0])
    def response(control, target):
        try:
            choices = _classification(interface)
        except UnsupportedLabelConfig:
            choices = None
        data_keys = tuple(dict.fromkeys(o.value.lstrip("$") for o in interface.objects
                                        if isinstance(o.value, str) and o.value.startswith("$")))
        return ResponseSpec(control.name, target, texts[target], data_keys, choices)

    def spans(control, target):
        others = tuple(c.name for c in interface.controls
                       if c.tag == "Labels" and c.name != control.name and any(t in texts for t in c.to_name))
        return SpanSpec(control.name, target, texts[target], tuple(map(str, control.labels)), others)

    for tag, build in (("TextArea", response), ("Labels", spans)):
        for control in interface.controls:
            targets = [t for t in control.to_name if t in texts]
            if control.tag == tag and targets:
                return build(control, targets[0])
    if not any(c.tag == "Choices" for c in interface.controls):
        raise UnsupportedLabelConfig(
            "labelloop supports text classification (a <Choices> control over a <Text> object), NER (Labels "
            "over Text), Supervised LLM Fine-tuning (TextArea over Text) and preference pairs (Choices naming "
            f"two answer Texts); found controls: {', '.join(sorted({c.tag for c in interface.controls})) or 'none'}")
    return _classification(interface)
