"""Simulated annotation rounds: random vs least-confidence vs margin vs entropy.

Real offline data, embeddings computed once and cached, the same classifier labelloop serves
(logistic regression over all-MiniLM-L6-v2 embeddings). Each round fits on the labels so far,
scores the unlabelled pool with the strategy, and "annotates" the ``--batch`` lowest scores.

Printed per dataset and strategy (mean over ``--seeds`` seeds):
- area under the learning curve (mean test accuracy over the label budget);
- labels needed to reach 95% of the accuracy of a model fit on the whole pool;
- the ratio of margin's labels to random's (target: at most 0.7).

With two classes, least confidence, margin and entropy rank identically (each is a monotone
function of max p), so on Rotten Tomatoes they coincide by construction; the 21-class ChatterBot
topics tell them apart. A PNG with the learning curves is written next to the results.

With ``--baseline-runtime torch`` everything runs again with the fp32 encoder and each figure is
compared on the same seeds, with the standard error of the difference (`encoder_baseline`).

Usage: python bench/active_learning.py [--seeds 20] [--budget 400] [--batch 10] [--baseline-runtime torch]
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import track  # noqa: E402
from rich.table import Table  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from labelloop.model.classification.classifier import EmbeddingClassifier, embed  # noqa: E402
from labelloop.model.embeddings import runtime_from_env  # noqa: E402
from labelloop.model.datasets import chatterbot_topics, rotten_tomatoes  # noqa: E402
from labelloop.model.ranking import query  # noqa: E402

STRATEGIES = ("random", "least_confidence", "margin", "entropy")
RESULTS = Path(__file__).parent / "results"


def simulate(X_pool, y_pool, X_test, y_test, *, strategy, seed, n_init, batch, budget):
    """Returns (label counts, test accuracies) for one run."""
    rng = np.random.default_rng(seed)
    labelled = list(rng.choice(len(y_pool), size=n_init, replace=False))
    while len(set(y_pool[labelled])) < 2:  # a classifier needs two classes to start
        labelled.append(int(rng.integers(len(y_pool))))
    counts, accs = [], []
    while True:
        clf = EmbeddingClassifier().fit(X_pool[labelled], y_pool[labelled])
        counts.append(len(labelled))
        accs.append(float((clf.predict(X_test) == y_test).mean()))
        if len(labelled) >= budget:
            return np.array(counts), np.array(accs)
        mask = np.ones(len(y_pool), dtype=bool)
        mask[labelled] = False
        pool_idx = np.flatnonzero(mask)
        proba = clf.predict_proba(X_pool[pool_idx])
        picked, _ = query(proba, min(batch, budget - len(labelled)), strategy=strategy,
                          random_state=int(rng.integers(1 << 31)))
        labelled.extend(pool_idx[picked].tolist())


def labels_to_reach(counts, accs, target):
    hit = np.flatnonzero(accs >= target)
    return int(counts[hit[0]]) if len(hit) else None


def measure(items, args, console) -> dict:
    """Learning curves of every strategy on one dataset: ``{"full", "counts", "accs": {strategy: (seeds, points)}}``."""
    t = time.perf_counter()
    X = embed([it.text for it in items], "default")
    console.print(f"embedded {len(items)} texts in {time.perf_counter() - t:.1f} s")
    y = np.array([it.label for it in items])
    X_pool, X_test, y_pool, y_test = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    full_correct = EmbeddingClassifier().fit(X_pool, y_pool).predict(X_test) == y_test
    full = float(full_correct.mean())
    n_init = max(10, 2 * len(set(y)))
    accs, counts = {}, None
    for strategy in STRATEGIES:
        runs = [simulate(X_pool, y_pool, X_test, y_test, strategy=strategy, seed=s, n_init=n_init,
                         batch=args.batch, budget=args.budget)
                for s in track(range(args.seeds), description=f"{strategy}", console=console, transient=True)]
        counts = runs[0][0]
        accs[strategy] = np.stack([r[1] for r in runs])
    return {"full": full, "full_correct": full_correct, "counts": counts, "accs": accs}


def figures(run: dict, seeds: np.ndarray) -> dict[str, float | None]:
    """AULC and labels to 95% of full-pool accuracy per strategy, over the given seed indices."""
    out: dict[str, float | None] = {"full-pool accuracy": run["full"]}
    needed = {}
    for strategy, accs in run["accs"].items():
        out[f"{strategy}: AULC"] = float(accs[seeds].mean())
        reach = [labels_to_reach(run["counts"], a, 0.95 * run["full"]) for a in accs[seeds]]
        needed[strategy] = float(np.mean(reach)) if None not in reach else None
        out[f"{strategy}: labels to 95%"] = needed[strategy]
    out["margin ÷ random labels"] = (needed["margin"] / needed["random"]
                                     if needed["margin"] is not None and needed["random"] else None)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=20,
                        help="labels-to-95%% is a threshold crossing: with 5 seeds it moved by 20-50 labels")
    parser.add_argument("--budget", type=int, default=400)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--rt-size", type=int, default=4000, help="Rotten Tomatoes snippets used (pool + test)")
    parser.add_argument("--baseline-runtime", choices=("torch", "torch-bf16"),
                        help="run again with this encoder and compare every figure (paired over seeds)")
    args = parser.parse_args()
    console = Console()

    datasets = {
        "rotten_tomatoes (2 classes)": rotten_tomatoes(args.rt_size, seed=0),
        "chatterbot_topics (21 classes)": chatterbot_topics(),
    }
    table = Table(title=f"Active learning, {args.seeds} seeds, batch {args.batch}, budget {args.budget} labels")
    for col in ("dataset", "strategy", "AULC", "labels to 95% of full", "full-pool acc"):
        table.add_column(col, justify="right" if col != "strategy" and col != "dataset" else "left")
    ratios, runs = {}, {}
    every = np.arange(args.seeds)
    for name, items in datasets.items():
        console.print(name)
        run = runs[name] = measure(items, args, console)
        shown = figures(run, every)
        for strategy, accs in run["accs"].items():
            needed = shown[f"{strategy}: labels to 95%"]
            reached = sum(labels_to_reach(run["counts"], a, 0.95 * run["full"]) is not None for a in accs)
            label = f"{needed:.0f}" if needed is not None else f"> {args.budget} ({reached}/{len(accs)} seeds reached)"
            table.add_row(name, strategy, f"{accs.mean():.3f}", label, f"{run['full']:.3f}")
        needed_margin, needed_random = shown["margin: labels to 95%"], shown["random: labels to 95%"]
        if needed_margin is not None and needed_random is not None:
            ratios[name] = needed_margin / needed_random
        elif needed_margin is not None:
            ratios[name] = needed_margin / args.budget  # random did not get there: an upper bound
        else:
            ratios[name] = None
    console.print(table)
    for name, ratio in ratios.items():
        if ratio is None:
            console.print(f"{name}: margin did not reach 95% of full accuracy within {args.budget} labels")
        else:
            verdict = "meets" if ratio <= 0.7 else "MISSES"
            console.print(f"{name}: margin needs {ratio:.2f}x the labels random needs ({verdict} the 0.7 target)")
    if args.baseline_runtime:
        from encoder_baseline import comparison_table, default_encoder, paired_accuracy_se, paired_bootstrap

        ours = runtime_from_env()
        with default_encoder(args.baseline_runtime):
            for name, items in datasets.items():
                console.print(f"{name}, encoder {args.baseline_runtime}")
                baseline = measure(items, args, console)
                # the full-pool model has one split, not one per seed: its error is over the test items
                full_se = paired_accuracy_se(runs[name]["full_correct"], baseline["full_correct"])
                rows = paired_bootstrap(figures, runs[name], baseline, n_seeds=args.seeds,
                                        lower_is_better=lambda figure: "labels" in figure,
                                        fixed_se={"full-pool accuracy": full_se})
                console.print(comparison_table(f"{name}: encoder {ours} against {args.baseline_runtime}, "
                                               f"{args.seeds} seeds", rows, ours=ours, baseline=args.baseline_runtime))

    RESULTS.mkdir(exist_ok=True)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(runs), figsize=(6 * len(runs), 4.5))
    for ax, (name, run) in zip(np.atleast_1d(axes), runs.items()):
        counts = run["counts"]
        for strategy, accs in run["accs"].items():
            mean, std = accs.mean(0), accs.std(0)
            ax.plot(counts, mean, label=strategy)
            ax.fill_between(counts, mean - std, mean + std, alpha=0.15)
        ax.set_title(name)
        ax.set_xlabel("labels")
        ax.set_ylabel("test accuracy")
        ax.legend()
    fig.tight_layout()
    out = RESULTS / "active_learning.png"
    fig.savefig(out, dpi=110)
    console.print(f"learning curves: {out}")


if __name__ == "__main__":
    main()
