"""How strongly the classification head is regularised: its ``C``, chosen per retrain.

A logistic head over frozen embeddings with ``C`` = 1 underfits many-class projects (ChatterBot's
21 topics: 0.825 full-pool accuracy, 0.862 with ``C`` = 4), while two- and five-class projects are
as good or slightly better at 1 (`bench/outcome.py --head-c`). So the served head's default is
``"auto"``: `choose_C` cross-validates a short grid on the current labels and takes a weaker
regularisation only when it wins by more than noise. Classes with fewer labels than folds, the
rule early in annotation on many-class projects, stay in every training part instead of
postponing the choice until every class has enough: on ChatterBot topics the stream reached 95%
of full-pool accuracy after 295 labels instead of 415 (3 seeds, docs/benchmarks.md), and two-
and five-class projects drew the same learning curves.
"""
from __future__ import annotations

import warnings
from typing import Callable, Sequence

import numpy as np

AUTO = "auto"
GRID = (1.0, 4.0)  # most regularised first: the choice where the folds cannot tell them apart
N_FOLDS = 3
MAX_SAMPLES = 3000  # the choice is made on a random subsample of this size, so a retrain stays quick


def jaccard(proba: np.ndarray, Y: np.ndarray, *, threshold: float = 0.5) -> np.ndarray:
    """Per-item Jaccard similarity, shape ``(n,)``, of the labels chosen from ``proba`` ``(n, k)``
    (each at least its most likely label) and the 0/1 indicators ``Y`` ``(n, k)``."""
    chosen = proba >= threshold
    chosen[np.arange(len(proba)), proba.argmax(axis=1)] = True
    truth = np.asarray(Y, dtype=bool)
    return (chosen & truth).sum(axis=1) / np.maximum((chosen | truth).sum(axis=1), 1)


def beats(candidate, baseline) -> bool:
    """Whether ``candidate``'s per-fold scores ``(n_folds,)`` beat ``baseline``'s on the same
    folds by more than one standard error of the paired differences (with one fold, by anything)."""
    gain = np.asarray(candidate, dtype=float) - np.asarray(baseline, dtype=float)
    noise = gain.std(ddof=1) / np.sqrt(len(gain)) if len(gain) > 1 else 0.0
    return bool(gain.mean() > noise)


def choose_C(X: np.ndarray, y, *, make_head: Callable[[float], object], grid: Sequence[float] = GRID,
             n_folds: int = N_FOLDS, max_samples: int = MAX_SAMPLES, seed: int = 0) -> float:
    """The head's ``C`` for ``X`` ``(n, dim)`` and ``y``: ``(n,)`` labels, or ``(n, k)`` 0/1
    indicators for a multi-label head.

    ``make_head(C)`` builds an unfitted scikit-learn classifier. Each ``C`` of ``grid`` (ordered
    from the most regularised) is scored on the same ``n_folds`` folds: accuracy, or the mean
    per-item Jaccard similarity for indicators. Going down the grid, the next ``C`` replaces the
    current choice only when it beats it by more than one standard error of the paired fold
    differences: on a few hundred labels a small cross-validated gain is mostly luck. Items of a
    class with fewer than ``n_folds`` examples are in every training part and never scored;
    ``grid[0]`` while fewer than two classes have ``n_folds`` (and, multi-label, while some label
    has fewer). Deterministic for ``seed``.
    """
    from sklearn.model_selection import KFold, StratifiedKFold

    grid = [float(c) for c in grid]
    if not grid or n_folds < 2:
        raise ValueError(f"need at least one C and two folds, got grid={grid}, n_folds={n_folds}")
    y = np.asarray(y)
    multi_label = y.ndim == 2
    if len(y) > max_samples:
        keep = np.sort(np.random.default_rng(seed).choice(len(y), max_samples, replace=False))
        X, y = X[keep], y[keep]
    if multi_label:
        if y.shape[1] == 0 or y.sum(axis=0).min() < n_folds:
            return grid[0]
        folds = list(KFold(n_folds, shuffle=True, random_state=seed).split(X))
    else:
        names = y.astype(str)
        classes, counts = np.unique(names, return_counts=True)
        if (counts >= n_folds).sum() < 2:
            return grid[0]
        rare = counts[np.searchsorted(classes, names)] < n_folds
        scored, always = np.flatnonzero(~rare), np.flatnonzero(rare)  # rare classes train only
        folds = [(np.concatenate([scored[train], always]), scored[test]) for train, test in
                 StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(scored, names[scored])]
    scores = np.empty((len(grid), len(folds)))
    with warnings.catch_warnings():  # a one-vs-rest label absent from a training fold: known, handled
        warnings.simplefilter("ignore", UserWarning)
        for i, C in enumerate(grid):
            for j, (train, test) in enumerate(folds):
                head = make_head(C).fit(X[train], y[train])
                if multi_label:
                    scores[i, j] = jaccard(head.predict_proba(X[test]), y[test]).mean()
                else:
                    scores[i, j] = np.mean(head.predict(X[test]) == y[test])
    chosen = 0
    for i in range(1, len(grid)):
        if beats(scores[i], scores[chosen]):
            chosen = i
    return grid[chosen]
