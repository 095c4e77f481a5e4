"""The NER audit: annotators' consensus per word, out-of-fold word probabilities, Cleanlab's
token-classification checks, and how each span source fares against people.

`audit_spans` works on plain texts and per-annotator character spans; reading them from Label
Studio's regions is `labelloop.kinds.spans`'s business.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from labelloop.model.errors import NotEnoughLabelsError

from . import weak_supervision as ws
from .gazetteer import out_of_fold_spans
from .pretrained import PretrainedNER
from .tagger import out_of_fold_proba, tagged_spans, word_features
from .tokens import make_docs, spans_from_labels, token_spans, word_labels


@dataclass
class SpanAudit:
    """Findings (worst first) and what the report shows.

    ``consensus``: per task of ``task_ids``, the consensus spans ``(start, end, label)``;
    ``quality``: ``(n_tasks,)`` Cleanlab sentence label quality; ``report``: each source's
    precision/recall per label against the consensus (`weak_supervision.source_report`)."""

    findings: list[dict]
    messages: list[str]
    task_ids: list
    consensus: list
    quality: np.ndarray
    report: dict = field(default_factory=dict)


def token_consensus(docs: Sequence, annotators: Sequence[dict], classes: Sequence[str]
                    ) -> tuple[list[np.ndarray], np.ndarray]:
    """Per Doc, the majority class of each word over its annotators (``{annotator: spans}``),
    and ``(n_docs,)`` flags of Docs where some word's vote is tied (the tie goes to ``O``, then
    to the label listed first)."""
    labels, ties = [], np.zeros(len(docs), dtype=bool)
    for i, (doc, by_annotator) in enumerate(zip(docs, annotators)):
        votes = np.zeros((len(doc), len(classes)), dtype=int)
        for spans in by_annotator.values():
            votes[np.arange(len(doc)), word_labels(doc, spans, classes)] += 1
        top = votes.max(axis=1, initial=0)
        ties[i] = bool(len(by_annotator) > 1 and ((votes == top[:, None]).sum(axis=1) > 1).any())
        labels.append(votes.argmax(axis=1) if len(doc) else np.zeros(0, dtype=int))
    return labels, ties


def _describe(spans) -> list[str]:
    return [f"{label}: {text}" for text, label in spans]


def audit_spans(task_ids: Sequence, texts: Sequence[str], annotators: Sequence[dict], labels: Sequence[str], *,
                pretrained: PretrainedNER | None = None, file_entries: dict | None = None, ignore_case: bool = False,
                model_name: str = "default", n_folds: int = 5, seed: int = 0, progress=None) -> SpanAudit:
    """Audit annotated ``texts``; ``annotators``: per text, ``{annotator: [(start, end, label), ...]}``.

    A finding per text whose consensus Cleanlab flags (``label_error``; the value to suggest is
    the out-of-fold tagger's spans) or whose annotators tie on some word (``annotator_tie``).
    Raises `NotEnoughLabelsError` with fewer than ``n_folds`` texts or no span at all."""
    from cleanlab.token_classification.filter import find_label_issues
    from cleanlab.token_classification.rank import get_label_quality_scores

    labels = tuple(labels)
    classes = ("O",) + labels
    if len(texts) < max(2, n_folds):
        raise NotEnoughLabelsError(f"{len(texts)} annotated texts; the audit needs at least {max(2, n_folds)}")
    docs = make_docs(texts)
    consensus, ties = token_consensus(docs, annotators, classes)
    gold_char = [[s[:3] for s in spans_from_labels(doc, y, classes)] for doc, y in zip(docs, consensus)]
    if not any(gold_char):
        raise NotEnoughLabelsError("no annotation marks an entity of the config's labels")
    if progress:
        progress("word features and out-of-fold taggers", None)
    features = word_features(docs, model_name=model_name)
    proba = out_of_fold_proba(features, consensus, labels, n_folds=n_folds, seed=seed)

    usable = [i for i, doc in enumerate(docs) if len(doc)]
    quality = np.ones(len(docs))
    flagged_words: dict[int, list[int]] = {}
    if usable:
        y = [consensus[i] for i in usable]
        p = [proba[i] for i in usable]
        issues = find_label_issues(y, p, n_jobs=1)  # cleanlab's pool needs fork-inherited globals
        scores, _ = get_label_quality_scores(y, p)
        quality[usable] = scores
        for sentence, word in issues:
            flagged_words.setdefault(usable[sentence], []).append(word)

    findings = []
    for i in sorted(set(flagged_words) | set(np.flatnonzero(ties).tolist()), key=lambda i: quality[i]):
        doc, text = docs[i], texts[i]
        suggested = [s[:3] for s in spans_from_labels(doc, proba[i].argmax(axis=1), classes, proba[i])]
        words = flagged_words.get(i, [])
        reasons = [f"'{doc[w].text}' is {classes[consensus[i][w]]}, the model says {classes[int(proba[i][w].argmax())]}"
                   for w in sorted(words)[:3]]
        if ties[i]:
            reasons.insert(0, "annotators tie on some words")
        findings.append({
            "task_id": int(task_ids[i]), "issues": (["label_error"] if words else []) + (["annotator_tie"] if ties[i] else []),
            "quality": round(float(quality[i]), 6), "given": _describe((text[s:e], l) for s, e, l in gold_char[i]),
            "suggested": _describe((text[s:e], l) for s, e, l in suggested), "value": [text, suggested],
            "n_annotators": len(annotators[i]), "agreement": None, "reason": "; ".join(reasons)})

    gold_tokens = [token_spans(doc, spans) for doc, spans in zip(docs, gold_char)]
    sources = {"tagger": tagged_spans(docs, proba, classes)}
    if pretrained is not None:
        sources["pretrained"] = [token_spans(doc, s) for doc, s in zip(docs, pretrained.spans(texts))]
    sources["gazetteer"] = out_of_fold_spans(texts, gold_char, docs, file_entries=file_entries, ignore_case=ignore_case,
                                             n_folds=n_folds, seed=seed)
    report = ws.source_report(docs, gold_tokens, sources, labels)
    messages = [f"{len(flagged_words)} of {len(docs)} texts have words Cleanlab flags (out-of-fold tagger, "
                f"{n_folds} folds); {int(ties.sum())} have tied annotators"]
    return SpanAudit(findings, messages, [int(t) for t in task_ids], gold_char, quality, report)
