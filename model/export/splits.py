"""Leakage-free train/validation/test splits.

Items come with a group id (near-duplicates share one, see
`labelloop.model.data_issues.near_duplicate_groups`) and optionally a label. Whole groups are
assigned, so near-duplicates never straddle splits; within each label stratum the groups go to
whichever split is furthest below its share, which keeps label proportions close to the
fractions. The result depends only on the input order, the fractions and the seed.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from typing import Sequence

import numpy as np

SPLIT_NAMES = ("train", "validation", "test")


def parse_fractions(text: str | Sequence[float]) -> tuple[float, ...]:
    """``"0.8,0.1,0.1"`` -> ``(0.8, 0.1, 0.1)``; one to three non-negative shares summing to 1."""
    try:
        values = tuple(float(v) for v in (text.split(",") if isinstance(text, str) else text))
    except ValueError:
        raise ValueError(f"split fractions must be numbers like 0.8,0.1,0.1, got {text!r}") from None
    if not 1 <= len(values) <= len(SPLIT_NAMES) or any(v < 0 for v in values) or abs(sum(values) - 1) > 1e-6 \
            or values[0] <= 0:
        raise ValueError(f"split fractions must be 1-3 non-negative numbers summing to 1 with train > 0, got {text!r}")
    return values


def leakage_free_split(groups, labels=None, *, fractions: Sequence[float] = (0.8, 0.1, 0.1),
                       seed: int = 0) -> np.ndarray:
    """Split index per item, shape ``(n_items,)``, indexing ``fractions`` (0 = train).

    ``groups``: ``(n_items,)`` group ids; items of one group always share a split.
    ``labels``: ``(n_items,)`` hashable labels to stratify by (a group counts under its most
    common label), or None.
    """
    fractions = np.asarray(parse_fractions(fractions))
    groups = np.asarray(groups)
    n = len(groups)
    labels = [""] * n if labels is None else [str(label) for label in labels]
    if len(labels) != n:
        raise ValueError(f"labels must have shape ({n},), got {len(labels)} items")
    members: dict = defaultdict(list)
    for i, g in enumerate(groups.tolist()):
        members[g].append(i)
    strata: dict = defaultdict(list)
    for g, items in members.items():
        top = Counter(labels[i] for i in items).most_common()
        strata[min(label for label, count in top if count == top[0][1])].append(g)
    rng = np.random.default_rng(seed)
    split = np.zeros(n, dtype=int)
    global_count = np.zeros(len(fractions))
    usable = fractions > 0
    for label in sorted(strata):
        stratum = strata[label]
        order = rng.permutation(len(stratum))
        # big groups first, shuffled within a size, so that small ones can even out the shares
        order = sorted(order, key=lambda k: -len(members[stratum[k]]))
        size = sum(len(members[g]) for g in stratum)
        count = np.zeros(len(fractions))
        for k in order:
            items = members[stratum[k]]
            deficit = fractions * size - count + (fractions * (global_count.sum() + len(items)) - global_count)
            deficit[~usable] = -np.inf
            s = int(np.argmax(deficit))
            split[items] = s
            count[s] += len(items)
            global_count[s] += len(items)
    return split


def random_split(n_items: int, *, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0) -> np.ndarray:
    """An item-level random split ``(n_items,)``, ignoring groups: the leaky baseline."""
    fractions = np.asarray(parse_fractions(fractions))
    bounds = np.round(np.cumsum(fractions) * n_items).astype(int)
    split = np.searchsorted(bounds, np.arange(n_items), side="right")
    return np.random.default_rng(seed).permutation(np.minimum(split, len(fractions) - 1))


def cross_split_pairs(pairs, split) -> int:
    """How many ``(i, j)`` pairs (near-duplicates, ``(n_pairs, 2)``) have members in different splits."""
    pairs = np.asarray(pairs, dtype=int).reshape(-1, 2)
    split = np.asarray(split)
    return int((split[pairs[:, 0]] != split[pairs[:, 1]]).sum())
