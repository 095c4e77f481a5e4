"""From labelled examples to clean, deduplicated, leakage-free splits (no file I/O here).

`prepare` cleans (text hygiene and unusable texts; the text itself stays verbatim), collapses
exact duplicates, links near-duplicates with three detectors and splits whole groups
(`labelloop.model.export.splits`):

- ``normalised_text``: equal after case, punctuation, whitespace and NFKC are set aside;
- ``minhash``: word-shingle Jaccard similarity over a threshold (MinHash-LSH);
- ``embedding``: cosine similarity of the texts' embeddings over a threshold (k-NN graph).

Synthetic variants (`labelloop augment`) join their source's group whatever their text, so a
variant never lands in another split than the example it was made from; ``synthetic=False``
leaves them out.

The split is then checked without the k-NN graph: each validation/test item's nearest
earlier-split item (exact search) must be below the threshold; any pair found joins the groups
and the split is redone. It reports the cross-split pairs a plain random split would have had,
and the count after (0). `render_splits` writes the format's lines per split.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import numpy as np

from ..data_issues import (cross_split_neighbours, groups_from_pairs, knn_graph, minhash_pairs, near_duplicate_pairs,
                          same_key_pairs)
from .formats import Example, RenderOptions, render
from .splits import SPLIT_NAMES, cross_split_pairs, leakage_free_split, parse_fractions, random_split
from ..text_cleaning import clean_text, dedup_key, unintelligible_reason, verbatim

DETECTORS = ("normalised_text", "minhash", "embedding")
SYNTHETIC_LEFT_OUT = "synthetic variant (--no-synthetic)"


@dataclass
class PreparedExport:
    """``examples``: kept examples in input order; ``split`` and ``group``: ``(n_kept,)``.
    ``dropped``: reason -> task ids. ``near_duplicate_pairs``: ``(n_pairs, 2)`` indices into
    ``examples``, all detectors together; ``pairs_by_detector``: how many each one found.
    ``seconds``: wall time per step."""

    examples: list[Example]
    split: np.ndarray
    group: np.ndarray
    fractions: tuple[float, ...]
    dropped: dict = field(default_factory=dict)
    exact_duplicates: int = 0
    near_duplicate_pairs: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=int))
    overlap_before: int = 0
    overlap_after: int = 0
    seconds: dict = field(default_factory=dict)
    pairs_by_detector: dict = field(default_factory=dict)

    def split_examples(self) -> dict[str, list[Example]]:
        return {name: [e for e, s in zip(self.examples, self.split) if s == k]
                for k, name in enumerate(SPLIT_NAMES[:len(self.fractions)])}


def _text(value, *, keep_offsets: bool):
    if not isinstance(value, str):
        return value
    return clean_text(value) if keep_offsets else verbatim(value)


def clean(examples: Sequence[Example], *, keep_offsets: bool = False) -> tuple[list[Example], dict]:
    """Examples worth training on, and ``{reason: [task ids]}`` of the rest.

    Texts stay as annotated: `verbatim` only unifies line endings (ends included). With
    ``keep_offsets`` (NER), the text only gets `clean_text`, which keeps every offset: the spans
    point into it. A response or rejected response that is set must hold text."""
    kept, dropped = [], {}
    for example in examples:
        example = replace(example, prompt=_text(example.prompt, keep_offsets=keep_offsets),
                          response=_text(example.response, keep_offsets=False),
                          rejected=_text(example.rejected, keep_offsets=False))
        reason = unintelligible_reason(example.prompt)
        if reason:
            reason = f"prompt/text {reason}"
        elif example.response is not None:
            blank = not example.response.strip()
            unusable = None if blank else unintelligible_reason(example.response)
            reason = "empty response" if blank else (f"response {unusable}" if unusable else None)
            if not reason and example.rejected is not None and (not example.rejected.strip()
                                                                 or example.rejected.strip() == example.response.strip()):
                reason = "rejected response empty or the same as the chosen one"
        if reason:
            dropped.setdefault(reason, []).append(example.task_id)
        else:
            kept.append(example)
    return kept, dropped


def _content_key(example: Example) -> str:
    """Exact duplicates share this: the same texts but for whitespace at their ends (kept in the
    files, not in the comparison), labels and spans."""
    def ends(text):
        return text.strip() if isinstance(text, str) else text
    return json.dumps([ends(example.prompt), ends(example.response), ends(example.rejected), example.labels,
                       example.spans])


def prepare(examples: Sequence[Example], *, keep_offsets: bool = False, fractions="0.8,0.1,0.1", seed: int = 0,
            near_duplicate_threshold: float = 0.95, embed: Callable[[list[str]], np.ndarray] | None = None,
            n_neighbors: int = 10, minhash_threshold: float = 0.8, max_rounds: int = 5,
            synthetic: bool = True) -> PreparedExport:
    """Clean, collapse exact duplicates, group near-duplicates of the user's text (``embed``
    maps texts to ``(n, dim)`` vectors; None skips the embedding detector), split, and check the
    split (see the module docstring)."""
    fractions = parse_fractions(fractions)
    seconds = {}
    t = time.perf_counter()
    if not synthetic:
        left_out = [e.task_id for e in examples if e.synthetic_of is not None]
        examples = [e for e in examples if e.synthetic_of is None]
    kept, dropped = clean(examples, keep_offsets=keep_offsets)
    if not synthetic and left_out:
        dropped[SYNTHETIC_LEFT_OUT] = left_out
    seen, unique = set(), []
    for example in kept:
        key = _content_key(example)
        if key in seen:
            dropped.setdefault("exact duplicate", []).append(example.task_id)
        else:
            seen.add(key)
            unique.append(example)
    seconds["clean_and_exact_dedup"] = time.perf_counter() - t

    t = time.perf_counter()
    keys = [dedup_key(e.prompt) for e in unique]
    found = {"normalised_text": same_key_pairs(keys),
             "minhash": minhash_pairs(keys, threshold=minhash_threshold) if minhash_threshold > 0
             else np.zeros((0, 2), dtype=int)}
    seconds["text_near_duplicates"] = time.perf_counter() - t
    vectors = None
    if embed is not None and len(unique) > 1:
        t = time.perf_counter()
        vectors = embed([e.prompt for e in unique])
        seconds["embed"] = time.perf_counter() - t
        t = time.perf_counter()
        found["embedding"] = near_duplicate_pairs(knn_graph(vectors, n_neighbors=n_neighbors),
                                                  threshold=near_duplicate_threshold)
        seconds["embedding_near_duplicates"] = time.perf_counter() - t
    # a variant and its source (and the source's other variants) share a group
    sources = same_key_pairs([str(e.synthetic_of if e.synthetic_of is not None else e.task_id) for e in unique])
    pairs = _union([*found.values(), sources])

    t = time.perf_counter()
    strata = [e.stratum for e in unique]
    for _ in range(max_rounds):
        group = groups_from_pairs(len(unique), pairs)
        split = leakage_free_split(group, strata, fractions=fractions, seed=seed)
        if vectors is None:
            break
        # the k-NN graph sees 10 neighbours per text; an exact search per split sees them all
        missed = cross_split_neighbours(vectors, split, threshold=near_duplicate_threshold)
        if not len(missed):
            break
        found["embedding"] = _union([found["embedding"], missed])
        pairs = _union([pairs, missed])
    seconds["split"] = time.perf_counter() - t
    before = cross_split_pairs(pairs, random_split(len(unique), fractions=fractions, seed=seed))
    # ``pairs`` holds every miss the exact check found, so this counts any left when the rounds ran out
    after = cross_split_pairs(pairs, split)
    return PreparedExport(unique, split, group, fractions, dropped, len(dropped.get("exact duplicate", ())),
                          pairs, before, after, seconds,
                          {name: int(len(found[name])) if name in found else None for name in DETECTORS})


def _union(arrays) -> np.ndarray:
    stacked = [np.asarray(a, dtype=int).reshape(-1, 2) for a in arrays]
    stacked = np.vstack(stacked) if stacked else np.zeros((0, 2), dtype=int)
    return np.unique(np.sort(stacked, axis=1), axis=0) if len(stacked) else stacked


def render_splits(prepared: PreparedExport, fmt: str, opts: RenderOptions) -> dict[str, list[str]]:
    """Lines per split name: one JSON object per line, or one CoNLL block per example."""
    out = {}
    for name, examples in prepared.split_examples().items():
        records = [render(e, fmt, opts) for e in examples]
        out[name] = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in records]
    return out
