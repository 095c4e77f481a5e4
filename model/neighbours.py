"""Cosine nearest neighbours with FAISS.

Every neighbour search in labelloop goes through `nearest`: the k-NN graph of the audit and the
export (`labelloop.model.data_issues.knn_graph`), the exact cross-split check, and the audit's
k-NN head (`FaissKNNClassifier`). Rows are L2-normalised float32, so inner product = cosine.

The search is exact by default, and deterministic, which byte-identical exports need. Small sets
go to FAISS's ``IndexFlatIP`` (BLAS, 3-10x faster than scikit-learn's brute search in
`bench/scale.py`). Large ones, on a CPU with native bf16 arithmetic, take a certified shortcut
(`_certified_search`): candidates from a bfloat16 matrix product (twice fp32's speed; a self
search computes each pair once), found through the maxima of column groups rather than a full
top-k, re-scored in fp32, and every row whose top ``k`` the bf16 rounding could have changed is
searched again by FAISS, so the result is the exact one. With
``LABELLOOP_NEIGHBOURS=approximate``, sets above ``EXACT_MAX_ITEMS`` rows use an ``IndexIVFFlat``
(about 4·√n lists, ``NPROBE`` searched): at 100k no faster than the bf16 search and at recall
0.94 of the exact top 10 in `bench/scale.py`, so it is opt-in.
"""
from __future__ import annotations

import logging

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

logger = logging.getLogger(__name__)

#: with LABELLOOP_NEIGHBOURS=approximate, above this many indexed rows the search is approximate
EXACT_MAX_ITEMS = 20_000
#: inverted lists searched per query (bench/scale.py: 16 gave recall 0.92, 32 0.94, 64 0.96 at 100k)
NPROBE = 32
#: query x indexed rows from which the bf16 shortcut beats FAISS's flat search (about 15k x 15k)
CERTIFIED_MIN_PAIRS = 2e8
#: query rows per bf16 block: at 100k indexed rows the block's scores take 200 MB
_BLOCK = 1024
#: columns per group whose maximum screens a row's (or a block column's) best scores
_GROUP = 16
#: int16 bits of a bf16 score left out of a search (-0.0, below every score >= 0 as int16)
_EXCLUDED = -(2 ** 15)
#: query rows re-scored in fp32 at a time: their gathered candidates stay in cache (14 MB at c = 18)
_RERANK_ROWS = 512


def _candidates(k: int) -> int:
    """bf16 candidates per row: 8 spare rows past k certified 99% of rows at 100k in bench/scale.py."""
    return max(16, k + 8)


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
    wants_exact = (not approximate_allowed()) if exact is None else exact
    if (wants_exact or len(X) <= EXACT_MAX_ITEMS) and _certified_pays(len(Q), len(X)):
        return _certified_search(X, None if self_search else Q, k=k)
    return _faiss_search(X, Q, k=k, self_search=self_search, exact=exact, nprobe=nprobe)


def _faiss_search(X, Q, *, k, self_search, exact, nprobe):
    index = _index(X, exact=exact, nprobe=nprobe)
    sims, idx = index.search(Q, k + 1 if self_search else k)
    sims[idx < 0] = -np.inf
    return _without_own(sims, idx, np.arange(len(Q)), k=k) if self_search else (sims, idx)


def _without_own(sims, idx, own, *, k: int):
    """``k + 1`` hits per row less each row's own index ``own`` (or, where duplicates hid it, the last hit)."""
    mine = idx == own[:, None]
    drop = np.where(mine.any(axis=1), mine.argmax(axis=1), k)
    keep = np.ones_like(idx, dtype=bool)
    keep[np.arange(len(idx)), drop] = False
    return sims[keep].reshape(len(idx), k), idx[keep].reshape(len(idx), k)


def _certified_pays(n_query: int, n_index: int) -> bool:
    from .embeddings import native_bf16

    return n_query * n_index >= CERTIFIED_MIN_PAIRS and native_bf16()


#: rows of a first, cheap pass that estimates how many rows the bf16 search would certify
_PROBE_ROWS = 1024
#: below this share of certified rows in the probe, FAISS's flat search is faster
_MIN_CERTIFIED = 0.75


def _certified_search(X: np.ndarray, Q: np.ndarray | None, *, k: int) -> tuple[np.ndarray, np.ndarray]:
    """`nearest`'s exact answer, computed through bf16 candidates (``Q`` None: a self search).

    1. Candidates: each query row's ``c`` best bf16 scores (`_self_candidates`, `_query_candidates`).
    2. Their exact fp32 cosines; the top ``k`` of those, ties to the lower index (`_rerank`).
    3. A row is certain when its ``k``-th exact cosine beats the ``c``-th bf16 score by more than
       the rounding can move a score (`_Rounding`): no row outside the candidates can then reach
       the top ``k``. The other rows go to FAISS's exact search.

    Where neighbours crowd together (near-isotropic data), few rows can be certified; a probe of
    ``_PROBE_ROWS`` rows measures that first and hands such sets to FAISS whole.
    """
    import torch

    c = _candidates(k)
    self_search = Q is None
    Xt = torch.from_numpy(X)
    Xb = Xt.to(torch.bfloat16)
    Qt = Xt if self_search else torch.from_numpy(Q)
    Qb = Xb if self_search else Qt.to(torch.bfloat16)
    rounding = _Rounding(Qt, Qb, Xt, Xb)

    probe = torch.from_numpy(np.unique(np.linspace(0, len(Qt) - 1, min(len(Qt), _PROBE_ROWS)).astype(np.int64)))
    ids, tail = _query_candidates(Qb[probe], Xb, c + 1 if self_search else c)
    *_, uncertain = _rerank(Qt[probe], Xt, ids, tail, k=k, bound=rounding.bound(probe, tail),
                            own=probe if self_search else None)
    certified = 1.0 - len(uncertain) / len(probe)
    if certified < _MIN_CERTIFIED:
        logger.info("bf16 search: a probe certified %.0f%% of rows; FAISS's flat search instead", 100 * certified)
        return _faiss_search(X, X if self_search else Q, k=k, self_search=self_search, exact=True, nprobe=NPROBE)

    if self_search:  # rows of a region side by side: a block's own rows then set tight floors
        order = _regions(Xb)
        found, found_tail = _self_candidates(Xb[order], c)
        cand, tail = torch.empty_like(found), torch.empty_like(found_tail)
        cand[order], tail[order] = torch.where(found >= 0, order[found.clamp(min=0)], -1), found_tail
    else:
        cand, tail = _query_candidates(Qb, Xb, c)
    sims = np.empty((len(Qt), k), dtype=np.float32)
    idx = np.empty((len(Qt), k), dtype=np.int64)
    redo = []
    for start in range(0, len(Qt), _RERANK_ROWS):
        rows = slice(start, start + _RERANK_ROWS)
        top, top_ids, uncertain = _rerank(Qt[rows], Xt, cand[rows], tail[rows], k=k,
                                          bound=rounding.bound(rows, tail[rows]))
        sims[rows], idx[rows] = top.numpy(), top_ids.numpy()
        redo.append(uncertain + start)
    redo = torch.cat(redo).numpy()
    logger.info("bf16 search: %d of %d rows certified, %d searched again by FAISS", len(Qt) - len(redo), len(Qt),
                len(redo))
    if len(redo):
        if self_search:  # a self search of these rows: FAISS over all rows, each row's own hit dropped
            found = _faiss_search(X, X[redo], k=k + 1, self_search=False, exact=True, nprobe=NPROBE)
            sims[redo], idx[redo] = _without_own(*found, redo, k=k)
        else:
            sims[redo], idx[redo] = _faiss_search(X, Q[redo], k=k, self_search=False, exact=True, nprobe=NPROBE)
    return sims, idx


def _rerank(Q, X, ids, tail, *, k: int, bound, own=None):
    """The top ``k`` of candidate ``ids (rows, c)`` by exact fp32 cosine, ties to the lower index,
    and the positions of the rows it cannot certify. ``own``: each query row's own index, left out."""
    import torch

    exact = torch.bmm(X[ids.clamp(min=0)], Q.unsqueeze(2)).squeeze(2)
    exact[ids < 0] = -torch.inf
    if own is not None:
        exact[ids == own.unsqueeze(1)] = -torch.inf
    # one key orders by score, then by lower index: the float's bits made monotonic, above the index
    bits = exact.view(torch.int32).to(torch.int64)
    key = (torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits) << 31) | (2 ** 31 - 1 - ids.clamp(min=0))
    order = torch.topk(key, k, dim=1).indices
    top, top_ids = torch.gather(exact, 1, order), torch.gather(ids, 1, order)
    uncertain = torch.nonzero(~(top[:, -1] > tail + bound)).squeeze(1)
    return top, top_ids, uncertain


class _Rounding:
    """How far a row's bf16 scores can sit from the exact cosines of the fp32 rows.

    For a query row q and any indexed row x: the inputs' rounding moves q.x by at most
    |q~ - q| |x~| + |q| |x~ - x| (Cauchy-Schwarz); fp32 accumulation of 384 products by less than
    3e-5; and the product's rounding to bf16 by half a unit in the last place of the score, which
    for a score at or below the row's ``c``-th (``tail``) is at most that of the tail, upwards.
    """

    def __init__(self, Q, Qb, X, Xb):
        import torch

        def error_and_norm(fp32, bf16):
            rounded = bf16.float()
            return (torch.linalg.vector_norm(rounded - fp32, dim=1),
                    torch.linalg.vector_norm(rounded, dim=1).clamp(min=1.0))

        self.q_error, self.q_norm = error_and_norm(Q, Qb)
        x_error, x_norm = (self.q_error, self.q_norm) if X is Q else error_and_norm(X, Xb)
        self.x_error, self.x_norm = x_error.max().item(), x_norm.max().item()

    def bound(self, rows, tail):
        """The most any score of the query ``rows`` (an index or a slice) can move, given their tails."""
        import torch

        _, exponent = torch.frexp(tail.abs().clamp(min=2.0 ** -100))
        half_ulp = torch.where(torch.isfinite(tail), torch.ldexp(torch.ones_like(tail), exponent - 9),
                               torch.zeros_like(tail))
        return self.q_error[rows] * self.x_norm + self.q_norm[rows] * self.x_error + half_ulp + 3e-5


def _query_candidates(Qb, Xb, c: int):
    """Each query row's ``c`` best bf16 scores over the indexed rows: ``(ids, c-th score)``."""
    import torch

    n, c = len(Xb), min(c, len(Xb))
    Xp = _padded(Xb)
    ids = torch.empty((len(Qb), c), dtype=torch.int64)
    tail = torch.empty(len(Qb), dtype=torch.float32)
    for start in range(0, len(Qb), _BLOCK):
        scores = Qb[start:start + _BLOCK] @ Xp.T
        scores.view(torch.int16)[:, n:] = _EXCLUDED
        values, found = _row_best(scores, c)
        ids[start:start + _BLOCK] = found
        tail[start:start + _BLOCK] = values[:, -1]
    return ids, tail


def _self_candidates(Xb, c: int):
    """Each row's ``c`` best bf16 scores over the other rows, each pair's score computed once.

    Blocks are taken from the last: block ``[s, e)`` scores its rows against every row from ``s``
    on and keeps each row's ``c`` best (the "row side", `_row_best`). A later row ``j`` keeps a
    score from this block only if it reaches ``j``'s own row-side ``c``-th best, a lower bound of
    its final one, so every score of its true top ``c`` survives and few others do. Returns
    ``(ids (n, c), c-th score (n,))``; missing candidates are -1 with score -inf.
    """
    import torch

    n = len(Xb)
    Xp = _padded(Xb)
    row_ids = torch.full((n, c), -1, dtype=torch.int64)
    row_vals = torch.full((n, c), -torch.inf, dtype=torch.float32)
    floor = torch.full((n,), _EXCLUDED, dtype=torch.int16)  # bf16 bits; _EXCLUDED: keep every score
    extra_rows, extra_ids, extra_vals = [], [], []
    for stop in range(n, 0, -_BLOCK):
        start = max(0, stop - _BLOCK)
        size = stop - start
        first = start // _GROUP * _GROUP  # columns from a multiple of _GROUP, so groups tile them
        scores = Xb[start:stop] @ Xp[first:].T
        bits = scores.view(torch.int16)
        bits[:, :start - first] = _EXCLUDED  # pairs with earlier rows: scored in their own block
        bits[:, n - first:] = _EXCLUDED
        diagonal = torch.arange(size)
        bits[diagonal, diagonal + (start - first)] = _EXCLUDED  # a row is not its own neighbour
        values, found = _row_best(scores, c)
        width = values.shape[1]
        row_ids[start:stop, :width] = torch.where(found >= 0, found + first, -1)
        row_vals[start:stop, :width] = values
        if width == c:
            tail = values[:, -1]
            floor[start:stop] = torch.where(tail >= 0, tail.to(torch.bfloat16).view(torch.int16), _EXCLUDED)
        if stop < n:
            later, later_floor = bits[:, stop - first:n - first], floor[stop:]
            if size % _GROUP == 0:  # screen groups of _GROUP block rows per column first
                stacked = later.view(size // _GROUP, _GROUP, -1)
                group, column = _positions(stacked.amax(dim=1) >= later_floor).unbind(1)
                gathered = stacked[group, :, column]  # (hits, _GROUP)
                member, offset = _positions(gathered >= later_floor[column].unsqueeze(1)).unbind(1)
                hit_rows, hit_cols, hit_bits = group[member] * _GROUP + offset, column[member], gathered[member, offset]
            else:
                hit_rows, hit_cols = _positions(later >= later_floor).unbind(1)
                hit_bits = later[hit_rows, hit_cols]
            extra_rows.append(hit_cols + stop)
            extra_ids.append(hit_rows + start)
            extra_vals.append(hit_bits.view(torch.bfloat16).float())
    # merge each row's two sides: its c best by score, ties to the lower index, in one sort
    rows = torch.cat([torch.arange(n).repeat_interleave(c), *extra_rows])
    ids = torch.cat([row_ids.ravel(), *extra_ids])
    vals = torch.cat([row_vals.ravel(), *extra_vals])
    bits = max(1, int(n).bit_length())
    if 2 * bits + 16 < 63:
        descending = (2 ** 16 - 1) - _orderable(vals.to(torch.bfloat16))  # 16 bits, larger score first
        order = torch.argsort((rows << (bits + 16)) | (descending << bits) | (ids + 1))  # unique keys
    else:  # above 8M rows the key needs more than 63 bits
        order = torch.argsort(ids, stable=True)
        order = order[torch.argsort(-vals[order], stable=True)]
        order = order[torch.argsort(rows[order], stable=True)]
    rows, ids, vals = rows[order], ids[order], vals[order]
    counts = torch.bincount(rows, minlength=n)
    first = torch.cumsum(counts, 0) - counts
    rank = torch.arange(len(rows)) - first[rows]
    keep = rank < c
    cand = torch.full((n, c), -1, dtype=torch.int64)
    cand_vals = torch.full((n, c), -torch.inf, dtype=torch.float32)
    cand[rows[keep], rank[keep]] = ids[keep]
    cand_vals[rows[keep], rank[keep]] = vals[keep]
    return cand, cand_vals[:, -1]


def _regions(Xb, n_regions: int = 256):
    """A row order that puts rows near the same one of ``n_regions`` evenly spaced rows together.

    In `_self_candidates` a row's floor comes from the rows after it in the order; with its
    region's rows among them the floor is near its final c-th best, and earlier blocks hand it
    fewer scores (bench/scale.py's 100k: 5.1M instead of 9.1M, about a second).
    """
    import torch

    centres = Xb[torch.linspace(0, len(Xb) - 1, min(n_regions, len(Xb))).long()]
    return torch.argsort(torch.argmax(Xb @ centres.T, dim=1), stable=True)


def _padded(Xb):
    """``Xb`` with zero rows up to a multiple of ``_GROUP``, so score rows split into groups."""
    import torch

    return torch.cat([Xb, Xb.new_zeros((-len(Xb) % _GROUP, Xb.shape[1]))])


def _row_best(scores, c: int):
    """Each row's ``c`` best of bf16 ``scores (rows, W)``, best first: ``(values, columns)``.

    ``W`` is a multiple of ``_GROUP``; entries whose bits are ``_EXCLUDED`` are left out. The
    columns fall into ``_GROUP``-sized groups (``j, j + W/_GROUP, ...``); the c-th largest group
    maximum is at most the row's c-th best score, so the c best scores all lie in the c best
    groups, and only those are read again. Maxima run on the int16 bits, which order like the
    scores where these are >= 0; rows with fewer than c groups above 0 are searched whole.
    Values are float32 (-inf where a row has fewer than c scores; columns -1 there).
    """
    import torch

    bits = scores.view(torch.int16)
    rows, width = bits.shape
    c = min(c, width)
    groups = bits.view(rows, _GROUP, width // _GROUP)  # a middle-axis max vectorises; a last-axis one not
    if groups.shape[2] >= c:
        top, group = torch.topk(groups.amax(dim=1), c, dim=1)
        gathered = groups[torch.arange(rows).unsqueeze(1), :, group]  # (rows, c, _GROUP)
        columns = (torch.arange(_GROUP) * groups.shape[2]).view(1, 1, -1) + group.unsqueeze(2)
        whole = torch.nonzero(top[:, -1] < 0).squeeze(1)
    else:
        gathered, columns = bits.unsqueeze(1), torch.arange(width).expand(rows, 1, width)
        whole = torch.zeros(0, dtype=torch.int64)
    values, at = torch.topk(_as_float(gathered.reshape(rows, -1)), c, dim=1)
    found = torch.gather(columns.reshape(rows, -1), 1, at)
    if len(whole):  # few scores above 0 (near-isotropic data, tiny blocks): no group bound
        values[whole], found[whole] = torch.topk(_as_float(bits[whole]), c, dim=1)
    found[values == -torch.inf] = -1
    return values, found


def _as_float(bits):
    """bf16 bits as float32 scores, ``_EXCLUDED`` as -inf."""
    import torch

    return torch.where(bits == _EXCLUDED, -torch.inf, bits.view(torch.bfloat16).float())


def _orderable(values):
    """bf16 ``values`` as int64 in [0, 2^16) in the same order (-inf first)."""
    import torch

    raw = values.view(torch.int16).to(torch.int64)
    return torch.where(raw < 0, -1 - raw, raw + 2 ** 15)


def _positions(mask):
    """``torch.nonzero(mask)`` of a 2-D bool ``mask`` with few hits, scanned eight bytes at a time."""
    import torch

    if mask.numel() % 8:
        return torch.nonzero(mask)
    words = torch.nonzero(mask.view(-1).view(torch.int64)).squeeze(1)
    word, byte = torch.nonzero(mask.view(-1, 8)[words]).unbind(1)
    flat = words[word] * 8 + byte
    return torch.stack([flat // mask.shape[1], flat % mask.shape[1]], dim=1)


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
