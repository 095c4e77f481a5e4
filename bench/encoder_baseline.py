"""The same bench figures with another encoder runtime, and whether a figure got worse.

Issue 16 asks that no accuracy figure of `bench/outcome.py` or `bench/active_learning.py` gets
worse with the default encoder (bf16 on a CPU with native bf16) against the fp32 encoder. Those
figures are means over seeds, and labels-to-95% is a threshold crossing: embeddings at cosine
0.9999 move it by tens of labels either way. So each figure is compared on the same seeds, and a
paired bootstrap over the seeds gives the standard error of the difference; a figure counts as
worse when it moved the bad way by more than twice that.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable

import numpy as np
from rich.table import Table

from labelloop.model.embeddings import CachedEmbedder, TransformerEncoder, get_embedder, register_embedder


@contextmanager
def default_encoder(runtime: str):
    """Within the block, ``"default"`` embeds with ``runtime`` (``torch``: fp32; ``torch-bf16``).

    Every path of the product that embeds by model name (heads, prior, audit) goes through the
    process registry, so swapping its ``"default"`` entry swaps the encoder everywhere. The
    baseline keeps no disk cache: its rows are computed afresh in each run.
    """
    if runtime not in ("torch", "torch-bf16"):
        raise ValueError(f"baseline runtime must be torch or torch-bf16, not {runtime!r}")
    original = get_embedder("default")
    register_embedder("default", CachedEmbedder(TransformerEncoder("default", bfloat16=runtime == "torch-bf16")))
    try:
        yield
    finally:
        register_embedder("default", original)


def paired_bootstrap(figures: Callable[[object, np.ndarray], dict[str, float | None]], ours, baseline, *,
                     n_seeds: int, lower_is_better: Callable[[str], bool] = lambda name: False, fixed_se: dict[str, float] | None = None,
                     n_resamples: int = 2000, random_state: int = 0) -> list[dict]:
    """Each figure for both runs, their difference and its standard error over resampled seeds.

    ``figures(run, seed_indices)`` computes every figure of one run from those seeds (repeats
    allowed). The same resample is used for both runs, so the error is that of a paired
    difference. ``lower_is_better(name)`` says which figures improve downwards (label counts).
    A figure that does not depend on the seeds (one fixed split) takes its error from
    ``fixed_se`` instead (`paired_accuracy_se`). Returns one dict per figure: ``name, ours, baseline, diff, se, verdict``, where
    ``verdict`` is ``worse`` when the figure moved the bad way by more than 2 standard errors.
    """
    every = np.arange(n_seeds)
    ours_all, base_all = figures(ours, every), figures(baseline, every)
    rng = np.random.default_rng(random_state)
    diffs: dict[str, list[float]] = {name: [] for name in ours_all}
    for _ in range(n_resamples):
        pick = rng.integers(0, n_seeds, n_seeds)
        a, b = figures(ours, pick), figures(baseline, pick)
        for name in diffs:
            if a[name] is not None and b[name] is not None:
                diffs[name].append(a[name] - b[name])
    rows = []
    for name, value in ours_all.items():
        base = base_all[name]
        if value is None or base is None:
            rows.append({"name": name, "ours": value, "baseline": base, "diff": None, "se": None, "verdict": "n/a"})
            continue
        diff = value - base
        se = (fixed_se or {}).get(name, float(np.std(diffs[name])) if diffs[name] else 0.0)
        bad = diff if lower_is_better(name) else -diff
        if abs(diff) < 1e-9:
            verdict = "same"
        else:
            verdict = "worse" if bad > 2 * se else ("better" if -bad > 2 * se else "same")
        rows.append({"name": name, "ours": value, "baseline": base, "diff": diff, "se": se, "verdict": verdict})
    return rows


def paired_accuracy_se(correct_a: np.ndarray, correct_b: np.ndarray) -> float:
    """Standard error of the difference of two accuracies on the same test items, ``(n,)`` bools each.

    Only the items one model gets right and the other wrong vary the difference (McNemar).
    """
    n = len(correct_a)
    b = float(np.sum(correct_a & ~correct_b))
    c = float(np.sum(~correct_a & correct_b))
    return float(np.sqrt(max(b + c - (b - c) ** 2 / n, 0.0)) / n)


def comparison_table(title: str, rows: list[dict], *, ours: str, baseline: str) -> Table:
    table = Table("figure", ours, baseline, "difference ± s.e.", "verdict", title=title)
    for row in rows:
        def shown(v):
            return "n/a" if v is None else (f"{v:.0f}" if abs(v) >= 10 else f"{v:.3f}")
        diff = "" if row["diff"] is None else f"{row['diff']:+.3g} ± {row['se']:.2g}"
        style = {"worse": "bold red", "better": "green"}.get(row["verdict"], "")
        table.add_row(row["name"], shown(row["ours"]), shown(row["baseline"]), diff,
                      f"[{style}]{row['verdict']}[/]" if style else row["verdict"])
    return table
