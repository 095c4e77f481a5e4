"""Multi-annotator consensus: majority vote, and CROWDLAB through `cleanlab.multiannotator`.

Labels come as a matrix of shape ``(n_items, n_annotators)`` holding a label or None where an
annotator did not label an item. Ties and single-annotator items are explicit in the result,
never silently resolved.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from ..errors import NotEnoughLabelsError


@dataclass
class Consensus:
    """Per-item arrays of shape ``(n_items,)``.

    ``label``: the consensus; ``agreement``: share of the item's annotators who gave it;
    ``n_annotators``: how many labelled the item; ``tie``: the vote was tied (broken by the model's
    probabilities when given, else alphabetically); ``quality``: CROWDLAB's consensus quality
    (NaN for plain majority vote). ``annotator_stats`` (CROWDLAB only): a DataFrame with one row
    per annotator, including ``annotator_quality``.
    """

    label: np.ndarray
    agreement: np.ndarray
    n_annotators: np.ndarray
    tie: np.ndarray
    quality: np.ndarray
    annotator_stats: object = None


def _validate(labels) -> np.ndarray:
    matrix = np.asarray(labels, dtype=object)
    if matrix.ndim != 2:
        raise ValueError(f"labels must have shape (n_items, n_annotators), got {matrix.shape}")
    counts = np.array([sum(v is not None for v in row) for row in matrix])
    if len(matrix) == 0 or (counts == 0).any():
        raise NotEnoughLabelsError("every item needs at least one annotator's label")
    return matrix


def majority_vote(labels, *, pred_probs: np.ndarray | None = None, classes=None) -> Consensus:
    """Most frequent label per item. ``pred_probs`` ``(n_items, n_classes)`` with ``classes`` break ties."""
    matrix = _validate(labels)
    class_index = {str(c): i for i, c in enumerate(classes)} if classes is not None else {}
    n = len(matrix)
    out_label = np.empty(n, dtype=object)
    agreement, n_ann, tie = np.zeros(n), np.zeros(n, dtype=int), np.zeros(n, dtype=bool)
    for i, row in enumerate(matrix):
        votes = Counter(v for v in row if v is not None)
        top = max(votes.values())
        best = sorted(label for label, count in votes.items() if count == top)
        if len(best) > 1:
            tie[i] = True
            if pred_probs is not None and all(str(b) in class_index for b in best):
                best.sort(key=lambda label: -pred_probs[i, class_index[str(label)]])
        out_label[i] = best[0]
        n_ann[i] = sum(votes.values())
        agreement[i] = top / n_ann[i]
    return Consensus(out_label, agreement, n_ann, tie, np.full(n, np.nan))


def crowdlab(labels, pred_probs: np.ndarray, classes) -> Consensus:
    """CROWDLAB consensus, consensus quality and annotator quality (`cleanlab.multiannotator`).

    ``pred_probs``: out-of-sample probabilities ``(n_items, n_classes)``, columns in ``classes``
    order (see `labelloop.model.classification.label_issues.out_of_sample_proba`).

    Items with a single annotator keep that annotator's label: CROWDLAB would otherwise replace
    it with the model's guess whenever it trusts the model more than the annotator, and a label
    check against those probabilities would then never disagree.
    """
    import pandas as pd
    from cleanlab.multiannotator import get_label_quality_multiannotator

    matrix = _validate(labels)
    classes = [str(c) for c in classes]
    unknown = {str(v) for v in matrix.ravel() if v is not None} - set(classes)
    if unknown:
        raise ValueError(f"labels {sorted(unknown)} are not among the classes {classes}")
    if pred_probs.shape != (len(matrix), len(classes)):
        raise ValueError(f"pred_probs must have shape {(len(matrix), len(classes))}, got {pred_probs.shape}")
    codes = pd.DataFrame([[np.nan if v is None else classes.index(str(v)) for v in row] for row in matrix],
                         columns=[f"annotator_{j}" for j in range(matrix.shape[1])])
    if (codes.notna().sum(axis=1) > 1).sum() == 0:
        raise NotEnoughLabelsError("CROWDLAB needs at least one item labelled by two annotators")
    result = get_label_quality_multiannotator(codes, pred_probs, verbose=False)
    quality = result["label_quality"]
    vote = majority_vote(matrix, pred_probs=pred_probs, classes=classes)
    label = np.asarray([classes[int(c)] for c in quality["consensus_label"]], dtype=object)
    label = np.where(vote.n_annotators > 1, label, vote.label)
    return Consensus(label, quality["annotator_agreement"].to_numpy(dtype=float),
                     quality["num_annotations"].to_numpy(dtype=int), vote.tie,
                     quality["consensus_quality_score"].to_numpy(dtype=float), result["annotator_stats"])


def majority_vote_multilabel(label_sets) -> Consensus:
    """Per-label majority for multi-label items.

    ``label_sets``: ``(n_items, n_annotators)`` nested sequence holding a collection of labels, or
    None where an annotator did not label the item. A label is in the consensus when more than
    half of the item's annotators chose it. ``tie``: some label was chosen by exactly half; such
    labels are left out (the consensus keeps the most chosen labels if nothing has a majority).
    ``agreement``: share of annotators whose set equals the consensus. ``label`` holds sorted tuples.
    """
    rows = [list(row) for row in label_sets]
    n = len(rows)
    if n == 0 or any(all(v is None for v in row) for row in rows):
        raise NotEnoughLabelsError("every item needs at least one annotator's label")
    out_label = np.empty(n, dtype=object)
    agreement, n_ann, tie = np.zeros(n), np.zeros(n, dtype=int), np.zeros(n, dtype=bool)
    for i, row in enumerate(rows):
        sets = [frozenset(map(str, v)) for v in row if v is not None]
        votes = Counter(label for s in sets for label in s)
        n_ann[i] = len(sets)
        chosen = {label for label, count in votes.items() if 2 * count > len(sets)}
        tie[i] = any(2 * count == len(sets) for count in votes.values()) and len(sets) > 1
        if not chosen and votes:
            top = max(votes.values())
            chosen = {label for label, count in votes.items() if count == top}
        out_label[i] = tuple(sorted(chosen))
        agreement[i] = sum(s == frozenset(chosen) for s in sets) / len(sets)
    return Consensus(out_label, agreement, n_ann, tie, np.full(n, np.nan))
