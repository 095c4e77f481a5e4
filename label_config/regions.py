"""Label Studio's region formats, both ways: annotation results in, prediction results out.

Tasks and annotations are Label Studio's JSON (plain dicts).

One pair of functions per control type. Offsets of ``labels`` spans are in UTF-16 code units in
Label Studio (its UI is JavaScript); `labelled_spans` returns them as Label Studio stores them.
"""
from __future__ import annotations

from typing import Sequence

from .spec import ClassificationSpec, ResponseSpec, SpanSpec


def latest_annotation(annotations) -> dict | None:
    """The most recently updated annotation that was neither cancelled (skipped) nor empty."""
    usable = [a for a in annotations or () if isinstance(a, dict) and not a.get("was_cancelled") and a.get("result")]
    if not usable:
        return None
    return max(usable, key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""), a.get("id", 0)))


def choices_result(spec: ClassificationSpec, chosen: Sequence[str]) -> dict:
    """One result region that picks ``chosen`` in the spec's Choices control."""
    return {"from_name": spec.from_name, "to_name": spec.to_name, "type": "choices",
            "value": {"choices": list(chosen)}}


def chosen_labels(result, spec) -> tuple[str, ...]:
    """The labels an annotation's ``result`` list picks in the spec's Choices control (may be empty)."""
    chosen: list[str] = []
    for region in result or ():
        if isinstance(region, dict) and region.get("from_name") == spec.from_name \
                and str(region.get("type", "choices")).lower() == "choices":
            chosen.extend(str(c) for c in (region.get("value") or {}).get("choices") or ())
    return tuple(dict.fromkeys(chosen))


def textarea_result(spec: ResponseSpec, text: str) -> dict:
    """One result region that writes ``text`` into the spec's TextArea."""
    return {"from_name": spec.from_name, "to_name": spec.to_name, "type": "textarea", "value": {"text": [text]}}


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
    """``(start, end, label)`` spans an annotation marks in the spec's Labels control, sorted."""
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
