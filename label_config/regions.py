"""Label Studio's region formats, both ways: annotation results in, prediction results out.

Tasks and annotations are Label Studio's JSON (plain dicts).

One pair of functions per control type. Offsets of ``labels`` spans: Label Studio 1.23 counts
code points, as Python does; older releases counted JavaScript's UTF-16 units, which differ after
any emoji. `labelled_spans` reads either (the region's own text decides) and `span_result` writes
what ``LABELLOOP_SPAN_OFFSETS`` says (code points by default).
"""
from __future__ import annotations

import os
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


def latest_by_annotator(annotations, *, allow_empty: bool = False) -> dict:
    """``{annotator id: that annotator's latest_annotation}``, for annotators who have one."""
    own: dict = {}
    for annotation in annotations or ():
        if isinstance(annotation, dict):
            own.setdefault(annotation.get("completed_by"), []).append(annotation)
    latest = {who: latest_annotation(theirs, allow_empty=allow_empty) for who, theirs in own.items()}
    return {who: annotation for who, annotation in latest.items() if annotation is not None}


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


#: The unit of ``labels`` span offsets that `span_result` writes: ``"codepoints"`` (Label Studio
#: 1.23's labelling UI counts characters as Python does: its frontend converts its JavaScript
#: UTF-16 ranges with ``charsToCodePoints``, checked in a browser by ``docs/screenshot_ner.py``) or
#: ``"utf16"`` (older releases, whose UI counted UTF-16 units: label-studio issues 1347, 4988).
SPAN_OFFSETS = os.environ.get("LABELLOOP_SPAN_OFFSETS", "codepoints").strip().lower()
if SPAN_OFFSETS not in ("codepoints", "utf16"):
    raise ValueError(f"LABELLOOP_SPAN_OFFSETS={SPAN_OFFSETS!r}: choose codepoints or utf16")


def utf16_offsets(text: str) -> list[int]:
    """``(len(text) + 1,)`` UTF-16 offsets of each code point index (and of the end)."""
    offsets = [0]
    for ch in text:
        offsets.append(offsets[-1] + (2 if ord(ch) > 0xFFFF else 1))
    return offsets


def _python_span(text: str, start: int, end: int, shown, utf16: dict | None, prefer: str
                 ) -> tuple[int, int] | None:
    """``(start, end)`` as Python indices of a span Label Studio stored, or None if it fits nowhere.

    The offsets are code points (Label Studio 1.23) or UTF-16 units (older releases); they differ
    only after a character outside the Basic Multilingual Plane, such as an emoji. The region's
    own ``text`` (what the annotator saw) decides; where both readings give it (the same word
    twice), or the region has no text, the ``prefer``-red unit wins when it fits."""
    as_codepoints = (start, end) if end <= len(text) else None
    as_utf16 = None
    if utf16 is not None and start in utf16 and end in utf16:
        as_utf16 = (utf16[start], utf16[end])
    candidates = (as_utf16, as_codepoints) if prefer == "utf16" else (as_codepoints, as_utf16)
    if isinstance(shown, str) and shown:
        for candidate in candidates:
            if candidate is not None and text[candidate[0]:candidate[1]] == shown:
                return candidate
    return candidates[0] or candidates[1]


def labelled_spans(result, spec: SpanSpec, text: str | None = None, *, problems: list | None = None,
                   offsets: str | None = None) -> list[tuple[int, int, str]]:
    """``(start, end, label)`` spans an annotation marks in the spec's Labels control, sorted,
    as Python string indices into ``text``.

    Offsets are read as code points or UTF-16 units, whichever gives the characters the region
    names (`_python_span`; ``offsets``, default `SPAN_OFFSETS`, breaks ties), so annotations from
    any Label Studio release read right. With ``text``, spans that do not fit in it are left out;
    ``problems``, if given, gets one message per span left out."""
    utf16 = {offset: i for i, offset in enumerate(utf16_offsets(text))} if isinstance(text, str) else None
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
        if isinstance(text, str):
            found = _python_span(text, start, end, value.get("text"), utf16, offsets or SPAN_OFFSETS)
            if found is None:
                if problems is not None:
                    problems.append(f"span {start}..{end} falls outside the text ({len(text)} characters)")
                continue
            start, end = found
        for label in value.get("labels") or ():
            spans.append((start, end, str(label)))
    return sorted(set(spans))


def span_result(spec: SpanSpec, text: str, start: int, end: int, label: str, *, region_id: str,
                score: float | None = None, offsets: str | None = None) -> dict:
    """One ``labels`` result region for ``text[start:end]`` (Python indices), in the offsets
    Label Studio's UI draws (``offsets``, default `SPAN_OFFSETS`), with the span's ``text`` and a
    string id (a numeric one breaks the labelling view). ``score``: the span's own confidence."""
    if (offsets or SPAN_OFFSETS) == "utf16":
        units = utf16_offsets(text[:end])
        start_out, end_out = units[start], units[end]
    else:
        start_out, end_out = start, end
    region = {"id": str(region_id), "from_name": spec.from_name, "to_name": spec.to_name, "type": "labels",
              "value": {"start": start_out, "end": end_out, "text": text[start:end], "labels": [label]}}
    if score is not None:
        region["score"] = round(float(score), 4)
    return region
