"""Words with their character offsets, and spans <-> per-word labels in the IO scheme.

Every span source works on the same words: spaCy's rule-based English tokenizer (no model, so it
is fast and the same for every pipeline). Span offsets are Python string indices here;
`labelloop.label_config.regions` converts them from and to Label Studio's offsets.

The IO scheme (``O`` or the entity label per word) keeps one class per label, which gives a
linear head and Cleanlab fewer, better-populated classes than BIO; two adjacent entities of the
same type merge, which is rare in practice and reported by the audit as one span.
"""
from __future__ import annotations

import threading
from typing import Sequence

import numpy as np

OUTSIDE = "O"
Span = tuple  # (start, end, label) in characters, or (start, end, label, score)

_lock = threading.Lock()
_nlp = None


def tokenizer_nlp():
    """A blank English spaCy pipeline (tokenizer only), built once per process."""
    global _nlp
    if _nlp is None:
        with _lock:
            if _nlp is None:
                import spacy

                _nlp = spacy.blank("en")
    return _nlp


def make_docs(texts: Sequence[str]) -> list:
    """spaCy Docs of ``texts`` (tokenized only)."""
    return list(tokenizer_nlp().tokenizer.pipe(list(texts)))


def token_spans(doc, spans: Sequence[Span]) -> list[tuple[int, int, str]]:
    """``(start_token, end_token, label)`` for character ``spans``, widened to whole words.

    Spans that hold no word (only whitespace, or outside the text) are dropped; where spans
    overlap, the longest is kept (spaCy's `filter_spans`)."""
    from spacy.util import filter_spans

    found = []
    for start, end, label, *_ in spans:
        span = doc.char_span(start, end, label=label, alignment_mode="expand")
        if span is not None and len(span) and not all(t.is_space for t in span):
            found.append(span)
    return [(s.start, s.end, s.label_) for s in filter_spans(found)]


def word_labels(doc, spans: Sequence[Span], classes: Sequence[str]) -> np.ndarray:
    """``(len(doc),)`` class indices: 0 (``O``) outside spans, ``classes.index(label)`` inside.
    Labels not in ``classes`` count as ``O``."""
    index = {label: i for i, label in enumerate(classes)}
    out = np.zeros(len(doc), dtype=int)
    for start, end, label in token_spans(doc, spans):
        if label in index:
            out[start:end] = index[label]
    return out


def spans_from_labels(doc, labels: np.ndarray, classes: Sequence[str], proba: np.ndarray | None = None
                      ) -> list[tuple[int, int, str, float]]:
    """Character spans ``(start, end, label, score)`` of runs of equal non-``O`` labels.

    ``score``: the mean probability of the span's label over its words (1.0 without ``proba``).
    Whitespace tokens never start or end a span."""
    spans = []
    i, n = 0, len(doc)
    while i < n:
        k = int(labels[i])
        if k == 0 or doc[i].is_space:
            i += 1
            continue
        j = i + 1
        while j < n and int(labels[j]) == k and not doc[j].is_space:
            j += 1
        score = float(proba[i:j, k].mean()) if proba is not None else 1.0
        spans.append((doc[i].idx, doc[j - 1].idx + len(doc[j - 1]), classes[k], score))
        i = j
    return spans


def trim(doc, start: int, end: int) -> tuple[int, int] | None:
    """Character ``(start, end)`` without the words at either edge that hold no letter or digit
    (an emoji or a dash a model swept into an entity); None when nothing is left."""
    words = doc.char_span(start, end, alignment_mode="expand")
    if words is None:
        return start, end
    kept = [t for t in words if any(c.isalnum() for c in t.text)]
    if not kept:
        return None
    first, last = kept[0], kept[-1]
    return max(start, first.idx), min(end, last.idx + len(last))


def overlapping(spans: Sequence[Span]) -> list[tuple[Span, Span]]:
    """Pairs of spans that overlap (nested ones included), in order of start."""
    ordered = sorted(spans, key=lambda s: (s[0], -s[1]))
    pairs = []
    for i, a in enumerate(ordered):
        for b in ordered[i + 1:]:
            if b[0] >= a[1]:
                break
            pairs.append((a, b))
    return pairs
