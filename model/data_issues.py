"""Near-duplicates and outliers from embeddings.

`knn_graph` builds the one k-nearest-neighbour graph everything here shares. `find_data_issues`
hands it to Cleanlab's Datalab (``near_duplicate`` and ``outlier`` issue types) for the audit.
`near_duplicate_groups` groups items whose cosine similarity passes an explicit threshold, which
is what a leakage-free split needs: every group must land in one split.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from .neighbours import nearest, normalised


def knn_graph(features, *, n_neighbors: int = 10) -> csr_matrix:
    """Sparse ``(n_samples, n_samples)`` graph: each row holds its ``n_neighbors`` nearest other
    items with their cosine distance ``1 - cos`` (`labelloop.model.neighbours.nearest`: FAISS,
    exact unless ``LABELLOOP_NEIGHBOURS=approximate``)."""
    n = len(features)
    sims, idx = nearest(features, k=n_neighbors)
    if idx.shape[1] == 0:
        return csr_matrix((n, n))
    found = idx >= 0
    rows = np.repeat(np.arange(n), idx.shape[1])[found.ravel()]
    distances = np.clip(1.0 - sims[found].astype(np.float64), 0.0, 2.0)
    # Datalab wants every row to hold the same number of neighbours, sorted by distance
    graph = csr_matrix((distances, (rows, idx[found])), shape=(n, n))
    graph.sort_indices()
    return graph


@dataclass
class DataIssues:
    """Per-item arrays of shape ``(n_samples,)``; scores in [0, 1], lower is more suspicious.

    ``near_duplicate_of`` holds, per item, the indices of its near-duplicates (empty if none).
    """

    is_near_duplicate: np.ndarray
    near_duplicate_score: np.ndarray
    near_duplicate_of: list
    is_outlier: np.ndarray
    outlier_score: np.ndarray


def find_data_issues(features, *, n_neighbors: int = 10, graph: csr_matrix | None = None) -> DataIssues:
    """Cleanlab Datalab's near-duplicate and outlier checks on ``features`` ``(n_samples, dim)``."""
    from cleanlab import Datalab

    n = len(features)
    if n < 3:
        empty = np.zeros(n, dtype=bool)
        return DataIssues(empty, np.ones(n), [[] for _ in range(n)], empty.copy(), np.ones(n))
    graph = graph if graph is not None else knn_graph(features, n_neighbors=n_neighbors)
    lab = Datalab(data={"index": np.arange(n)}, verbosity=0)
    lab.find_issues(knn_graph=graph, issue_types={"near_duplicate": {}, "outlier": {}})
    dup = lab.get_issues("near_duplicate")
    out = lab.get_issues("outlier")
    return DataIssues(
        is_near_duplicate=dup["is_near_duplicate_issue"].to_numpy(bool),
        near_duplicate_score=dup["near_duplicate_score"].to_numpy(float),
        near_duplicate_of=[list(map(int, s)) for s in dup["near_duplicate_sets"]],
        is_outlier=out["is_outlier_issue"].to_numpy(bool),
        outlier_score=out["outlier_score"].to_numpy(float))


def near_duplicate_pairs(graph: csr_matrix, *, threshold: float = 0.95) -> np.ndarray:
    """Pairs ``(n_pairs, 2)``, ``i < j``, of `knn_graph` neighbours with cosine similarity >= ``threshold``."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    coo = graph.tocoo()
    close = coo.data <= 1.0 - threshold + 1e-6
    pairs = np.sort(np.c_[coo.row[close], coo.col[close]], axis=1)
    return np.unique(pairs, axis=0) if len(pairs) else np.zeros((0, 2), dtype=int)


def groups_from_pairs(n_samples: int, pairs) -> np.ndarray:
    """Group ids ``(n_samples,)`` of the connected components that ``pairs`` ``(n_pairs, 2)`` form,
    numbered in order of first appearance, so they are deterministic."""
    pairs = np.asarray(pairs, dtype=int).reshape(-1, 2)
    links = csr_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n_samples, n_samples))
    _, components = connected_components(links, directed=False)
    _, first = np.unique(components, return_index=True)
    renumber = np.empty(len(first), dtype=int)
    renumber[np.argsort(first)] = np.arange(len(first))
    return renumber[components]


def near_duplicate_groups(features, *, threshold: float = 0.95, n_neighbors: int = 10,
                          graph: csr_matrix | None = None) -> np.ndarray:
    """Group ids ``(n_samples,)``: items joined by a chain of cosine similarities >= ``threshold``
    share a group (see `groups_from_pairs`). ``features`` may be None when a `knn_graph` is given."""
    graph = graph if graph is not None else knn_graph(features, n_neighbors=n_neighbors)
    return groups_from_pairs(graph.shape[0], near_duplicate_pairs(graph, threshold=threshold))


def same_key_pairs(keys) -> np.ndarray:
    """Pairs ``(n_pairs, 2)``, ``i < j``, linking each item to the first item with an equal key
    (a chain per key is enough for grouping)."""
    first: dict = {}
    pairs = [(first.setdefault(key, i), i) for i, key in enumerate(keys) if key]
    pairs = [(a, b) for a, b in pairs if a != b]
    return np.asarray(pairs, dtype=int).reshape(-1, 2)


def _shingles(text: str, size: int) -> set[str]:
    words = text.split()
    if len(words) < size:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i:i + size]) for i in range(len(words) - size + 1)}


def minhash_pairs(texts, *, threshold: float = 0.8, num_perm: int = 128, shingle_size: int = 2,
                  seed: int = 1) -> np.ndarray:
    """Pairs ``(n_pairs, 2)``, ``i < j``, whose word-shingle Jaccard similarity is estimated at or
    above ``threshold``, through datasketch's MinHash-LSH, as LLM-data deduplication does.

    ``texts`` should already be normalised (see `labelloop.model.text_cleaning.dedup_key`).
    Unlike a k-nearest-neighbour search, LSH returns every candidate however many there are.
    """
    from datasketch import LeanMinHash, MinHash, MinHashLSH
    from datasketch.hashfunc import sha1_hash32

    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    shingles = [_shingles(t, shingle_size) for t in texts]
    known: dict[bytes, int] = {}

    def hashed(shingle: bytes) -> int:  # datasketch's own hash, once per distinct shingle
        value = known.get(shingle)
        if value is None:
            value = known[shingle] = sha1_hash32(shingle)
        return value

    hashes = MinHash.bulk([[s.encode("utf-8") for s in sh] for sh in shingles], num_perm=num_perm, seed=seed,
                          hashfunc=hashed)
    pairs = set()
    for i, (sh, mh) in enumerate(zip(shingles, hashes)):
        if not sh:
            continue
        lean = LeanMinHash(mh)
        for j in lsh.query(lean):
            if lean.jaccard(hashes[j]) >= threshold:  # LSH candidates include some below it
                pairs.add((j, i))
        lsh.insert(i, lean)
    return np.asarray(sorted(pairs), dtype=int).reshape(-1, 2)


def cross_split_neighbours(features, split, *, threshold: float = 0.95) -> np.ndarray:
    """Pairs ``(n_pairs, 2)`` across splits with cosine similarity >= ``threshold``, found by an
    exact nearest-neighbour search of each later split's items among the earlier splits' items.

    ``split``: ``(n_samples,)`` split indices. This checks a split without relying on any
    neighbour graph: an item whose nearest item in an earlier split is below ``threshold`` has
    no near-duplicate there at all.
    """
    features = normalised(features)
    split = np.asarray(split)
    found = []
    for s in np.unique(split)[1:]:
        earlier, later = np.flatnonzero(split < s), np.flatnonzero(split == s)
        if not len(earlier) or not len(later):
            continue
        sims, index = nearest(features[earlier], features[later], k=1, exact=True)
        close = sims[:, 0] >= threshold - 1e-6
        found.append(np.c_[earlier[index[close, 0]], later[close]])
    pairs = np.vstack(found) if found else np.zeros((0, 2), dtype=int)
    return np.sort(pairs, axis=1).astype(int)
