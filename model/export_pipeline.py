"""From labelled examples to clean, deduplicated, leakage-free splits (no file I/O here).

`prepare` cleans (whitespace, unusable texts), collapses exact duplicates, groups
near-duplicates by embedding cosine and splits whole groups (`labelloop.model.splits`). It
reports the cross-split near-duplicate pairs a plain random split would have had, and the
count after (0 by construction). `render_splits` writes the format's lines per split.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import numpy as np

from .data_issues import groups_from_pairs, knn_graph, near_duplicate_pairs
from .export_formats import Example, RenderOptions, render
from .splits import SPLIT_NAMES, cross_split_pairs, leakage_free_split, parse_fractions, random_split
from .text_cleaning import normalise_whitespace, unintelligible_reason


@dataclass
class PreparedExport:
    """``examples``: kept examples in input order; ``split`` and ``group``: ``(n_kept,)``.
    ``dropped``: reason -> task ids. ``near_duplicate_pairs``: ``(n_pairs, 2)`` indices into
    ``examples``. ``seconds``: wall time per step."""

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

    def split_examples(self) -> dict[str, list[Example]]:
        return {name: [e for e, s in zip(self.examples, self.split) if s == k]
                for k, name in enumerate(SPLIT_NAMES[:len(self.fractions)])}


def clean(examples: Sequence[Example], *, kind: str) -> tuple[list[Example], dict]:
    """Normalised examples that are worth training on, and ``{reason: [task ids]}`` of the rest.

    NER texts are kept verbatim: their spans are character offsets into them."""
    kept, dropped = [], {}
    for example in examples:
        if kind != "ner":
            example = replace(example, prompt=normalise_whitespace(example.prompt) if isinstance(
                example.prompt, str) else example.prompt)
        reason = unintelligible_reason(example.prompt)
        if reason:
            reason = f"prompt/text {reason}"
        elif kind in ("llm", "preference"):
            response = normalise_whitespace(example.response) if isinstance(example.response, str) else None
            rejected = normalise_whitespace(example.rejected) if isinstance(example.rejected, str) else None
            unusable = unintelligible_reason(response) if response else None
            reason = "empty response" if not response else (f"response {unusable}" if unusable else None)
            if not reason and kind == "preference" and (not rejected or rejected == response):
                reason = "rejected response empty or the same as the chosen one"
            example = replace(example, response=response, rejected=rejected)
        elif kind == "classification" and not example.labels:
            reason = "no label"
        if reason:
            dropped.setdefault(reason, []).append(example.task_id)
        else:
            kept.append(example)
    return kept, dropped


def _content_key(example: Example) -> str:
    return json.dumps([example.prompt, example.response, example.rejected, example.labels, example.spans])


def prepare(examples: Sequence[Example], *, kind: str, fractions="0.8,0.1,0.1", seed: int = 0,
            near_duplicate_threshold: float = 0.95, embed: Callable[[list[str]], np.ndarray] | None = None,
            n_neighbors: int = 10) -> PreparedExport:
    """Clean, collapse exact duplicates, group near-duplicates of the user's text (``embed``
    maps texts to ``(n, dim)`` vectors; None groups exact repeats of a text only), and split."""
    fractions = parse_fractions(fractions)
    seconds = {}
    t = time.perf_counter()
    kept, dropped = clean(examples, kind=kind)
    seen, unique = set(), []
    for example in kept:
        key = _content_key(example)
        if key in seen:
            dropped.setdefault("exact duplicate", []).append(example.task_id)
        else:
            seen.add(key)
            unique.append(example)
    seconds["clean_and_exact_dedup"] = time.perf_counter() - t

    prompts = [e.prompt for e in unique]
    pairs = np.zeros((0, 2), dtype=int)
    if embed is not None and len(unique) > 1:
        t = time.perf_counter()
        vectors = embed(prompts)
        seconds["embed"] = time.perf_counter() - t
    t = time.perf_counter()
    if embed is not None and len(unique) > 1:
        pairs = near_duplicate_pairs(knn_graph(vectors, n_neighbors=n_neighbors), threshold=near_duplicate_threshold)
    # identical prompts are near-duplicates whatever the encoder says
    first: dict = {}
    same = []
    for i, prompt in enumerate(prompts):
        j = first.setdefault(prompt, i)
        if j != i:
            same.append((j, i))
    if same:
        pairs = np.unique(np.vstack([pairs, np.asarray(same)]), axis=0)
    group = groups_from_pairs(len(unique), pairs)
    seconds["near_duplicates"] = time.perf_counter() - t

    t = time.perf_counter()
    split = leakage_free_split(group, [e.stratum for e in unique], fractions=fractions, seed=seed)
    seconds["split"] = time.perf_counter() - t
    before = cross_split_pairs(pairs, random_split(len(unique), fractions=fractions, seed=seed))
    return PreparedExport(unique, split, group, fractions, dropped, len(dropped.get("exact duplicate", ())),
                          pairs, before, cross_split_pairs(pairs, split), seconds)


def render_splits(prepared: PreparedExport, fmt: str, opts: RenderOptions) -> dict[str, list[str]]:
    """Lines per split name: one JSON object per line, or one CoNLL block per example."""
    out = {}
    for name, examples in prepared.split_examples().items():
        records = [render(e, fmt, opts) for e in examples]
        out[name] = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in records]
    return out
