"""Combining span sources by weak supervision (skweak), and measuring each source against people.

The sources (``pretrained``, ``gazetteer``, ``tagger``) put their spans on the same spaCy Docs
(`annotate`); an aggregator from skweak turns their votes into one labelling with per-word
probabilities (`aggregate`):

- before a project has annotations: skweak's majority voter with `PRIOR_WEIGHTS` (the
  gazetteer wins a disagreement, and each source still carries a span alone);
- once it has: the majority voter with each source weighed by its measured precision on the
  annotated spans (`source_report` over out-of-fold source spans, so a tagger or learned
  gazetteer is never scored on sentences it learned from), in the weighting
  (`precision_weights`, a source possibly left out) whose combination scores the highest
  out-of-fold F1; or, with
  ``LABELLOOP_NER_AGGREGATION=hmm``, skweak's HMM (`fit_hmm`) fitted on those same spans.
  The weighted vote is the default: on WNUT tweets its combination scored higher than the
  HMM's, and the HMM's posteriors saturate at 1.0, which leaves nothing to rank by
  (``bench/ner.py``).

A span's score is the mean probability of its label over its words; a text's "entity-ness" is
the highest probability any word has of being inside an entity.
"""
from __future__ import annotations

import contextlib
import io
from typing import Mapping, Sequence

import numpy as np

from .tokens import spans_from_labels

SOURCES = ("pretrained", "gazetteer", "tagger")
#: before any precision is measured, a list a person wrote outranks the model where they disagree
PRIOR_WEIGHTS = {"gazetteer": 1.0, "pretrained": 0.8}
AGGREGATIONS = ("hmm", "vote")
COMBINED = "combined"


def annotate(docs: Sequence, source_spans: Mapping[str, Sequence[Sequence[tuple]]]) -> None:
    """Put each source's ``(start_token, end_token, label)`` spans on the Docs (``doc.spans[source]``)."""
    from spacy.tokens import Span

    for name, per_doc in source_spans.items():
        for doc, spans in zip(docs, per_doc):
            doc.spans[name] = [Span(doc, s, e, label=label) for s, e, label in spans]


def majority_voter(labels: Sequence[str], weights: Mapping[str, float] | None = None):
    from skweak.voting import SequentialMajorityVoter

    return SequentialMajorityVoter(COMBINED, list(labels), initial_weights=dict(weights or {}))


def fit_hmm(docs: Sequence, labels: Sequence[str], *, n_iter: int = 4):
    """skweak's HMM fitted (unsupervised, Baum-Welch) on the sources' spans over ``docs``.
    Raises ValueError when no Doc holds any source span."""
    from skweak.generative import HMM

    if not any(len(doc.spans[name]) for doc in docs for name in doc.spans if name != COMBINED):
        raise ValueError("no source found any span to learn from")
    hmm = HMM(COMBINED, list(labels))
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):  # EM prints progress
        hmm.fit(list(docs), n_iter=n_iter)
    return hmm


def aggregate(aggregator, docs: Sequence, labels: Sequence[str]) -> list[tuple[list, np.ndarray]]:
    """Per Doc, ``(spans, entity_proba)``: character spans ``(start, end, label, score)`` and
    ``(len(doc),)`` probabilities of each word being inside an entity."""
    classes = ("O",) + tuple(labels)
    index = {label: k for k, label in enumerate(classes)}
    out = []
    for doc in docs:
        doc = aggregator(doc)
        proba = np.zeros((len(doc), len(classes)))
        for token, dist in doc.spans[COMBINED].attrs.get("probs", {}).items():
            for prefixed, p in dist.items():
                label = prefixed.split("-", 1)[1]
                if label in index:
                    proba[int(token), index[label]] += float(p)
        proba[:, 0] = np.clip(1.0 - proba[:, 1:].sum(axis=1), 0.0, 1.0)
        token_labels = np.zeros(len(doc), dtype=int)
        for span in doc.spans[COMBINED]:
            token_labels[span.start:span.end] = index.get(span.label_, 0)
        out.append((spans_from_labels(doc, token_labels, classes, proba), proba[:, 1:].sum(axis=1)))
    return out


def _bio(n_tokens: int, spans: Sequence[tuple]) -> list[str]:
    tags = ["O"] * n_tokens
    for start, end, label, *_ in spans:
        tags[start] = f"B-{label}"
        for i in range(start + 1, end):
            tags[i] = f"I-{label}"
    return tags


def source_report(docs: Sequence, gold: Sequence[Sequence[tuple]], predicted: Mapping[str, Sequence[Sequence[tuple]]],
                  labels: Sequence[str]) -> dict[str, dict]:
    """Entity-level (exact span and label, seqeval) precision, recall and F1 of each source
    against people's spans, per label and overall: ``{source: {label | "all": {...}}}``.
    All spans are ``(start_token, end_token, label)``."""
    from seqeval.metrics import classification_report

    y_true = [_bio(len(doc), spans) for doc, spans in zip(docs, gold)]
    report = {}
    for name, per_doc in predicted.items():
        y_pred = [_bio(len(doc), spans) for doc, spans in zip(docs, per_doc)]
        raw = classification_report(y_true, y_pred, output_dict=True, zero_division=0)
        n_pred = {label: sum(s[2] == label for spans in per_doc for s in spans) for label in labels}
        rows = {}
        for label in labels:
            r = raw.get(label, {})
            rows[label] = {"precision": float(r.get("precision", 0.0)), "recall": float(r.get("recall", 0.0)),
                           "f1": float(r.get("f1-score", 0.0)), "support": int(r.get("support", 0)),
                           "predicted": n_pred[label]}
        micro = raw.get("micro avg", {})
        rows["all"] = {"precision": float(micro.get("precision", 0.0)), "recall": float(micro.get("recall", 0.0)),
                       "f1": float(micro.get("f1-score", 0.0)), "support": int(micro.get("support", 0)),
                       "predicted": sum(n_pred.values())}
        report[name] = rows
    return report


def precision_weights(report: Mapping[str, Mapping[str, dict]]) -> dict[str, dict[str, float]]:
    """Two weightings of the sources for the majority voter, from each source's Laplace-smoothed
    overall precision ``p`` relative to the most precise source's (``p / best``):

    - ``"corroborated"``: ``p / best``. skweak's voter weighs "no entity" at
      ``3 ** -(weight voting for one)``, so a source alone carries a span only when its weight
      passes about 0.56: the most precise source fires alone, a much weaker one needs another
      source to agree (precision first; it wins once the tagger has a few hundred sentences);
    - ``"alone"``: ``0.6 + 0.4 * p / best``: every source carries a span by itself, and the more
      precise one wins a disagreement (recall first; it wins while the tagger is young).

    `train_spans` tries each with every source and without each one in turn, and keeps the
    combination that scores the highest out-of-fold F1."""
    precision = {}
    for name, rows in report.items():
        row = rows["all"]
        correct = row["precision"] * row["predicted"]
        precision[name] = (correct + 1.0) / (row["predicted"] + 2.0)
    best = max(precision.values(), default=1.0)
    return {"corroborated": {name: p / best for name, p in precision.items()},
            "alone": {name: 0.6 + 0.4 * p / best for name, p in precision.items()}}
