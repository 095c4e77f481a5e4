"""Cosine nearest neighbours with FAISS.

Every neighbour search in labelloop goes through `nearest`: the k-NN graph of the audit and the
export (`labelloop.model.data_issues.knn_graph`), the exact cross-split check, and the audit's
k-NN head (`FaissKNNClassifier`). Rows are L2-normalised float32, so inner product = cosine.

The search is exact by default (``IndexFlatIP``: BLAS, 3-10x faster than scikit-learn's brute
search in `bench/scale.py`, and deterministic, which byte-identical exports need). With
``LABELLOOP_NEIGHBOURS=approximate``, sets above ``EXACT_MAX_ITEMS`` rows use an ``IndexIVFFlat``
(about 4·√n lists, ``NPROBE`` searched): about 3x faster again at 100k, at the recall
`bench/scale.py` reports (0.94 of the exact top 10 on its stand-in data), so it is opt-in.
"""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

#: with LABELLOOP_NEIGHBOURS=approximate, above this many indexed rows the search is approximate
EXACT_MAX_ITEMS = 20_000
#: inverted lists searched per query (bench/scale.py: 16 gave recall 0.92, 32 0.94, 64 0.96 at 100k)
NPROBE = 32


def approximate_allowed() -> bool:
    """Whether ``LABELLOOP_NEIGHBOURS`` asks for approximate search of large sets."""
    import os

    value = os.environ.get("LABELLOOP_NEIGHBOURS", "exact").strip().lower() or "exact"
    if value not in {"exact", "approximate"}:
        raise ValueError(f"LABELLOOP_NEIGHBOURS must be 'exact' or 'approximate', not {value!r}")
    return value == "approximate"


def normalised(features) -> np.ndarray:
    """``features`` ``(n_samples, dim)`` as C-contiguous float32 rows of unit length."""
    X = np.asarray(features, dtype=np.float32)
    if X.ndim != 2:
        raise ValueError(f"features must have shape (n_samples, dim), got {X.shape}")
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return np.ascontiguousarray(X / np.maximum(norms, 1e-12))


def _index(X: np.ndarray, *, exact: bool | None, nprobe: int, seed: int = 0):
    import faiss

    dim = X.shape[1]
    if exact is None:
        exact = not approximate_allowed()
    if exact or len(X) <= EXACT_MAX_ITEMS:
        index = faiss.IndexFlatIP(dim)
    else:
        n_lists = int(4 * np.sqrt(len(X)))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, n_lists, faiss.METRIC_INNER_PRODUCT)
        # 40 rows per list train k-means well; more only costs time
        sample = np.random.default_rng(seed).choice(len(X), min(len(X), 40 * n_lists), replace=False)
        index.train(X[np.sort(sample)])
        index.nprobe = nprobe
    index.add(X)
    return index


def nearest(index_features, query_features=None, *, k: int, exact: bool | None = None,
            nprobe: int = NPROBE) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most cosine-similar indexed rows of each query row.

    ``exact``: True or False forces the choice; None follows ``LABELLOOP_NEIGHBOURS``.
    ``index_features``: ``(n_index, dim)``; ``query_features``: ``(n_query, dim)``, or None to
    search the indexed rows among themselves, each without itself. Returns ``(similarities,
    indices)``, both ``(n_query, k')`` with ``k' = min(k, available)``, most similar first; an
    approximate search may leave slots empty: index -1, similarity -inf.
    """
    X = normalised(index_features)
    self_search = query_features is None
    Q = X if self_search else normalised(query_features)
    available = len(X) - (1 if self_search else 0)
    k = min(int(k), available)
    if k < 1 or len(Q) == 0:
        return np.zeros((len(Q), 0), dtype=np.float32), np.zeros((len(Q), 0), dtype=np.int64)
    index = _index(X, exact=exact, nprobe=nprobe)
    sims, idx = index.search(Q, k + 1 if self_search else k)
    sims[idx < 0] = -np.inf
    if not self_search:
        return sims, idx
    # drop each row's own hit (or, where duplicates hid it, the last one)
    rows = np.arange(len(Q))[:, None]
    own = idx == rows
    drop = np.where(own.any(axis=1), own.argmax(axis=1), k)
    keep = np.ones_like(idx, dtype=bool)
    keep[np.arange(len(Q)), drop] = False
    return sims[keep].reshape(len(Q), k), idx[keep].reshape(len(Q), k)


class FaissKNNClassifier(ClassifierMixin, BaseEstimator):
    """k-NN vote over cosine neighbours, weighted by 1 / cosine distance.

    ``fit(X, y)`` returns self; ``classes_`` and the indexed rows end in ``_``.
    """

    def __init__(self, n_neighbors: int = 15):
        self.n_neighbors = n_neighbors

    def fit(self, X, y) -> "FaissKNNClassifier":
        self.X_ = normalised(X)
        self.classes_, self.y_ = np.unique(np.asarray(y), return_inverse=True)
        return self

    def predict_proba(self, X) -> np.ndarray:
        """``(n_samples, n_classes)`` vote shares."""
        sims, idx = nearest(self.X_, X, k=self.n_neighbors)
        weights = 1.0 / np.maximum(1.0 - sims.astype(np.float64), 1e-9)
        weights[idx < 0] = 0.0
        votes = np.zeros((len(idx), len(self.classes_)))
        np.add.at(votes, (np.repeat(np.arange(len(idx)), idx.shape[1]), self.y_[np.maximum(idx, 0)].ravel()),
                  weights.ravel())
        total = votes.sum(axis=1, keepdims=True)
        return np.where(total > 0, votes / np.where(total > 0, total, 1.0), 1.0 / len(self.classes_))

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]
