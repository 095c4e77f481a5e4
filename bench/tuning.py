"""What a tuned retrain (``LABELLOOP_TUNE_TRIALS``) buys: test accuracy of the served model with
the defaults and with the Optuna study's parameters, and the time the study cost, in one run.

Offline datasets: Rotten Tomatoes (2 classes), ChatterBot topics (21), BBC News (5). Per
dataset, label budget (``--budgets``) and seed: a stratified sample of labels, a held-out test
set (30% of the rest, at most 2,000). Both models are what the backend serves: the head over the
offline MiniLM blended with the zero-shot prior; the defaults are C "auto" (cross-validated from
{1, 4}) and prior strength 10, the tuned one takes `labelloop.model.classification.tuning.tune`'s
best (``--trials`` trials, at most ``--seconds`` s, the product's default budget, on 5 stratified
folds; the defaults are scored first). Embeddings are computed once per text (the on-disk cache), as in the product.

Usage: python bench/tuning.py [--seeds 3] [--budgets 30 100 300] [--trials 30] [--seconds 120]
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from labelloop.model.classification.classifier import (BlendedClassifier, EmbeddingClassifier,  # noqa: E402
                                                      ZeroShotClassifier, embed)
from labelloop.model.classification.tuning import DEFAULTS, tune  # noqa: E402
from labelloop.model.datasets import bbc_news, chatterbot_topics, rotten_tomatoes  # noqa: E402

RESULTS = Path(__file__).parent / "results"
DATASETS = {"Rotten Tomatoes": rotten_tomatoes, "ChatterBot topics": chatterbot_topics, "BBC News": bbc_news}


def served_accuracy(X, y, test_X, test_y, prior, *, C: float | str, prior_strength: float) -> float:
    head = EmbeddingClassifier(C=C).fit(X, y)
    model = BlendedClassifier(head, prior, n_labels=len(y), prior_strength=prior_strength)
    return float((model.predict(test_X) == test_y).mean())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budgets", type=int, nargs="+", default=[30, 100, 300])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=120.0)
    args = parser.parse_args()
    console = Console(width=120)
    rows = []
    for name, load in DATASETS.items():
        items = load()
        texts = np.array([it.text for it in items], dtype=object)
        labels = np.array([it.label for it in items], dtype=object)
        classes = sorted(set(labels))
        with console.status(f"{name}: embedding {len(texts):,} texts"):
            X_all = embed(list(texts), "default")
        prior = ZeroShotClassifier(labels=classes).fit()
        for budget in args.budgets:
            for seed in range(args.seeds):
                idx = np.arange(len(items))
                # every class at least twice, so that the folds can stratify
                train, rest = train_test_split(idx, train_size=max(budget, 2 * len(classes)), stratify=labels,
                                               random_state=seed)
                test = rest[np.random.default_rng(seed).permutation(len(rest))[:min(2000, int(0.3 * len(rest)))]]
                default = served_accuracy(X_all[train], labels[train], X_all[test], labels[test], prior,
                                          C=DEFAULTS["C"], prior_strength=DEFAULTS["prior_strength"])
                with console.status(f"{name}, {budget} labels, seed {seed}: tuning"):
                    result = tune(list(texts[train]), list(labels[train]), labels=classes, n_trials=args.trials,
                                  timeout_s=args.seconds, seed=seed)
                if result is None:  # as in the product: too few labels of a class to fold, defaults serve
                    console.print(f"{name}, {len(train)} labels, seed {seed}: a class has fewer than 2 labels, "
                                  "tuning skipped")
                    continue
                tuned = served_accuracy(X_all[train], labels[train], X_all[test], labels[test], prior,
                                        C=result.params["C"], prior_strength=result.params["prior_strength"])
                rows.append({"dataset": name, "labels": int(len(train)), "seed": seed, "default": default,
                             "tuned": tuned, "cv_default": result.default_score, "cv_tuned": result.score,
                             "kept_defaults": result.kept_defaults, "cv_best_trial": result.best_trial_score,
                             "seconds": result.seconds, "trials": result.trials, "params": result.params})
                console.print(f"{name}, {len(train)} labels, seed {seed}: test {default:.3f} -> {tuned:.3f} "
                              f"(cv {result.default_score:.3f} -> {result.score:.3f}, best trial "
                              f"{result.best_trial_score:.3f}{', defaults kept' if result.kept_defaults else ''}) "
                              f"in {result.seconds:.1f} s, {result.params}")
    table = Table("dataset", "labels", "defaults", "tuned", "Δ points (min / max)", "cv Δ points", "defaults kept",
                  "study s",
                  title=f"test accuracy of the served model, {args.seeds} seeds, {args.trials} trials")
    summary = []
    for name in DATASETS:
        for budget in sorted({r["labels"] for r in rows if r["dataset"] == name}):
            mine = [r for r in rows if r["dataset"] == name and r["labels"] == budget]
            if not mine:
                continue
            delta = 100 * np.array([r["tuned"] - r["default"] for r in mine])
            cv = 100 * np.array([r["cv_tuned"] - r["cv_default"] for r in mine])
            summary.append({"dataset": name, "labels": budget, "default": np.mean([r["default"] for r in mine]),
                            "tuned": np.mean([r["tuned"] for r in mine]), "delta_points": float(delta.mean()),
                            "seconds": float(np.mean([r["seconds"] for r in mine]))})
            table.add_row(name, str(budget), f"{summary[-1]['default']:.3f}", f"{summary[-1]['tuned']:.3f}",
                          f"{delta.mean():+.2f} ({delta.min():+.1f} / {delta.max():+.1f})", f"{cv.mean():+.2f}",
                          f"{sum(r['kept_defaults'] for r in mine)}/{len(mine)}", f"{summary[-1]['seconds']:.1f}")
    console.print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "tuning.json").write_text(json.dumps({"rows": rows, "summary": summary}, indent=2, default=float))


if __name__ == "__main__":
    main()
