"""Label Studio's region formats, both ways: annotation results in, prediction results out.

Tasks and annotations are Label Studio's JSON (plain dicts).

One pair of functions per control type. Offsets of ``labels`` spans are in UTF-16 code units in
Label Studio (its UI is JavaScript); `labelled_spans` and `span_result` convert them from and to
Python string indices.
"""
from __future__ import annotations

from typing import Sequence

from .spec import ClassificationSpec, ResponseSpec, SpanSpec


def latest_annotation(annotations, *, allow_empty: bool = False) -> dict | None:
    """The most recently updated annotation that was neither cancelled (skipped) nor empty.

    ``allow_empty``: an annotation with no region counts too (an NER annotation that marks no
    entity says the text has none)."""
    usable = [a for a in annotations or () if isinstance(a, dict) and not a.get("was_cancelled")
              and (a.get("result") or (allow_empty and isinstance(a.get("result"), list)))]
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


def utf16_offsets(text: str) -> list[int]:
    """``(len(text) + 1,)`` UTF-16 offsets of each code point index (and of the end)."""
    offsets = [0]
    for ch in text:
        offsets.append(offsets[-1] + (2 if ord(ch) > 0xFFFF else 1))
    return offsets


def labelled_spans(result, spec: SpanSpec, text: str | None = None, *, problems: list | None = None
                   ) -> list[tuple[int, int, str]]:
    """``(start, end, label)`` spans an annotation marks in the spec's Labels control, sorted.

    Label Studio counts offsets in UTF-16 code units. With ``text``, they are turned into Python
    string indices (they differ after any character outside the Basic Multilingual Plane, such
    as an emoji), and spans that do not fit in ``text`` are left out. ``problems``, if given,
    gets one message per span left out."""
    offsets = utf16_offsets(text) if isinstance(text, str) else None
    index = {offset: i for i, offset in enumerate(offsets)} if offsets else None
    spans = []
    for region in result or ():
        if not (isinstance(region, dict) and region.get("from_name") == spec.from_name):
            continue
        value = region.get("value") or {}
        start, end = value.get("start"), value.get("end")
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end):
            if problems is not None:
                problems.append(f"span {start!r}..{end!r} is not a pair of offsets with start < end")
            continue
        if index is not None:
            start16, end16 = start, end
            start, end = index.get(start), index.get(end)
            if start is None or end is None:  # outside the text, or inside a surrogate pair
                if problems is not None:
                    problems.append(f"span {start16}..{end16} falls outside the text ({offsets[-1]} UTF-16 units) "
                                    "or inside a character")
                continue
        for label in value.get("labels") or ():
            spans.append((start, end, str(label)))
    return sorted(set(spans))


def span_result(spec: SpanSpec, text: str, start: int, end: int, label: str, *, region_id: str,
                score: float | None = None) -> dict:
    """One ``labels`` result region for ``text[start:end]`` (Python indices), with Label Studio's
    UTF-16 offsets and a string id (a numeric one breaks the labelling view). ``score``: the
    span's own confidence, shown on the region."""
    offsets = utf16_offsets(text[:end])
    region = {"id": str(region_id), "from_name": spec.from_name, "to_name": spec.to_name, "type": "labels",
              "value": {"start": offsets[start], "end": offsets[end], "text": text[start:end], "labels": [label]}}
    if score is not None:
        region["score"] = round(float(score), 4)
    return region
