"""Query strategies for active learning: which unlabelled item should a human label next?

One contract, as in small-text: a strategy takes predicted probabilities and returns a score per
item where **lower means ask first**, so Label Studio's "Uncertainty sampling" (ascending
prediction score) serves the most informative task next. `query` returns the indices of the
``n`` best items with their scores.

Scores, all in [0, 1], for probabilities ``p`` of shape ``(n_samples, n_classes)``:

================  =====================================  ===================================
strategy          single-label score                     multi-label score (per-label p_k)
================  =====================================  ===================================
least_confidence  max_k p_k  (1 - modAL uncertainty)     min_k max(p_k, 1 - p_k)
margin            p_(1) - p_(2)  (modAL margin)          min_k |2 p_k - 1|
entropy           1 - H(p) / log(n_classes)              1 - max_k H2(p_k)   (H2 in bits)
random            uniform random, seeded                 uniform random, seeded
================  =====================================  ===================================

The single-label functions are modAL's (`modAL.uncertainty`); multi-label treats every label as
its own binary decision and scores the item by its least certain one.
"""
from __future__ import annotations

import numpy as np
from modAL.uncertainty import _proba_entropy, _proba_margin, _proba_uncertainty

from .errors import LabelloopError

STRATEGIES = ("least_confidence", "margin", "entropy", "random")


class UnknownStrategyError(LabelloopError, ValueError):
    """The query strategy name is not one of `STRATEGIES`."""


def _validate(proba) -> np.ndarray:
    proba = np.asarray(proba, dtype=float)
    if proba.ndim != 2:
        raise ValueError(f"probabilities must have shape (n_samples, n_classes), got {proba.shape}")
    return proba


def _binary(p: np.ndarray) -> np.ndarray:
    """Per-label probabilities (n, k) as k stacked two-class rows, shape (n, k, 2)."""
    return np.stack([p, 1.0 - p], axis=-1)


def score(proba, *, strategy: str = "least_confidence", multi_label: bool = False,
          random_state: int | None = 0) -> np.ndarray:
    """Informativeness scores of shape ``(n_samples,)``, in [0, 1]; lower means ask first."""
    proba = _validate(proba)
    n, k = proba.shape
    if strategy not in STRATEGIES:
        raise UnknownStrategyError(f"unknown query strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if n == 0:
        return np.zeros(0)
    if strategy == "random":
        return np.random.default_rng(random_state).random(n)
    if multi_label:
        pairs = _binary(proba).reshape(n * k, 2)
        if strategy == "least_confidence":
            per_label = 1.0 - _proba_uncertainty(pairs)
        elif strategy == "margin":
            per_label = _proba_margin(pairs)
        else:
            per_label = 1.0 - _proba_entropy(pairs) / np.log(2)
        return np.clip(per_label.reshape(n, k).min(axis=1), 0.0, 1.0)
    if strategy == "least_confidence":
        out = 1.0 - _proba_uncertainty(proba)
    elif strategy == "margin":
        out = _proba_margin(proba) if k > 1 else np.ones(n)
    else:
        out = 1.0 - _proba_entropy(proba) / np.log(k) if k > 1 else np.ones(n)
    return np.clip(out, 0.0, 1.0)


def query(proba, n: int, *, strategy: str = "least_confidence", multi_label: bool = False,
          random_state: int | None = 0) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` items to ask first: ``(indices, scores)``, both of shape ``(min(n, n_samples),)``.

    Ties are broken by index, so the result is deterministic.
    """
    scores = score(proba, strategy=strategy, multi_label=multi_label, random_state=random_state)
    order = np.argsort(scores, kind="stable")[:max(0, n)]
    return order, scores[order]


def n_clusters_for(n_items: int, *, max_clusters: int = 50) -> int:
    """Clusters for a pool: about sqrt(n/2), at least 1, at most ``max_clusters``."""
    if n_items < 4:
        return 1
    return int(min(max_clusters, max(2, round(np.sqrt(n_items / 2)))))


def diversity_clusters(embeddings, *, n_clusters: int | None = None, random_state: int = 0) -> np.ndarray:
    """K-means cluster id per item, shape ``(n_samples,)``, for batch diversity.

    Label Studio's uncertainty stream serves the least-solved cluster first, so integer clusters
    make it rotate across topics instead of serving near-duplicates in a row.
    ``n_clusters`` defaults to `n_clusters_for` the pool size.
    """
    from sklearn.cluster import KMeans, MiniBatchKMeans

    X = np.asarray(embeddings, dtype=np.float32)
    if X.ndim != 2:
        raise ValueError(f"embeddings must have shape (n_samples, dim), got {X.shape}")
    k = n_clusters or n_clusters_for(len(X))
    k = min(k, len(X))
    if k <= 1:
        return np.zeros(len(X), dtype=int)
    if len(X) > 20_000:
        model = MiniBatchKMeans(n_clusters=k, random_state=random_state, batch_size=4096, n_init=3)
    else:
        model = KMeans(n_clusters=k, random_state=random_state, n_init=3)
    return model.fit_predict(X).astype(int)
