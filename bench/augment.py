"""Does `labelloop augment` help a model trained on few labels? Test accuracy with and without
synthetic variants in the training data, in the same run.

Rotten Tomatoes: ``--labels`` (100) labelled snippets per seed, a fixed test set of 2,000 others.
The model is the one the backend serves after a retrain: the logistic-regression head over the
offline MiniLM, blended with the zero-shot prior at the default strength, counting every
training row (an accepted variant is an annotated task). Training sets compared, per seed:

- ``none``: the labels alone (the baseline);
- each AugLy method (``typos``, ``char-swaps``, ``contractions``, ``punctuation``), ``--n``
  variants per label, carrying the source's label (what a reviewer accepts);
- ``all AugLy``: all four together;
- ``paraphrase``: SmolLM2-135M (the embedded llama.cpp endpoint) rewriting each label once, when
  ``.venv-llm`` is there (``--no-paraphrase`` skips it).

Printed: mean test accuracy over ``--seeds`` seeds (and of the head alone, without the prior, since
added rows also shrink the prior's share of the blend), its change against ``none`` in points with a
standard error, and on how many seeds it won; a verdict per method that says "no gain" unless
the mean gain exceeds two standard errors. A PNG with the same numbers goes to bench/results.

Usage: python bench/augment.py [--labels 100] [--seeds 5] [--n 2]
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

from labelloop.model.augment import AUGLY_METHODS, augly_variants, clean_paraphrase, paraphrase_messages  # noqa: E402
from labelloop.model.classification.classifier import (BlendedClassifier, EmbeddingClassifier,  # noqa: E402
                                                      ZeroShotClassifier)
from labelloop.model.datasets import rotten_tomatoes  # noqa: E402
from labelloop.model.embeddings import get_embedder  # noqa: E402

RESULTS = Path(__file__).parent / "results"
PRIOR_STRENGTH = 10.0  # the backend's default (LABELLOOP_PRIOR_STRENGTH)


def accuracies(train_X, train_y, test_X, test_y, prior) -> tuple[float, float]:
    """(served model, head alone): the blend gives the prior less weight as rows are added."""
    head = EmbeddingClassifier().fit(train_X, train_y)
    model = BlendedClassifier(head, prior, n_labels=len(train_y), prior_strength=PRIOR_STRENGTH)
    return float((model.predict(test_X) == test_y).mean()), float((head.predict(test_X) == test_y).mean())


def paraphrases(texts: list[str], console: Console) -> dict[str, str | None] | None:
    """SmolLM2's rewrite of each text (kept in bench/results, so a rerun reuses them)."""
    from labelloop.model.responses.llm import Drafter, LLMConfig
    from labelloop.scripts.services import LLM_MODEL_ALIAS, ServiceError, llm_service

    cache = RESULTS / "augment-paraphrases.json"
    known = json.loads(cache.read_text()) if cache.exists() else {}
    if all(t in known for t in texts):
        return known

    try:
        service = llm_service(Path(RESULTS) / "augment-llama.log")
    except ServiceError as exc:
        console.print(f"[yellow]paraphrase skipped:[/] {exc}")
        return None
    service.start(timeout=180)
    try:
        drafter = Drafter(LLMConfig(base_url=service.url + "/v1", model=LLM_MODEL_ALIAS, temperature=0.9,
                                    max_tokens=96, samples=1, logprobs=False, concurrency=4))
        with console.status(f"paraphrasing {len(texts)} snippets with SmolLM2"):
            drafts = drafter.draft_many([paraphrase_messages(t) for t in texts])
    finally:
        service.stop()
    known.update({t: clean_paraphrase(d.text, t) for t, d in zip(texts, drafts)})
    RESULTS.mkdir(exist_ok=True)
    cache.write_text(json.dumps(known))
    return known


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--labels", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--n", type=int, default=2, help="AugLy variants per label and method")
    parser.add_argument("--no-paraphrase", action="store_true")
    args = parser.parse_args()
    console = Console(width=120)
    items = rotten_tomatoes(seed=0)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(items))
    test_idx, pool_idx = order[:2000], order[2000:]
    embed = get_embedder("default").embed
    test_X = embed([items[i].text for i in test_idx])
    test_y = np.array([items[i].label for i in test_idx])
    prior = ZeroShotClassifier(labels=["Positive", "Negative"]).fit()
    splits = [np.random.default_rng(100 + s).choice(pool_idx, args.labels, replace=False) for s in range(args.seeds)]
    sources = sorted({items[i].text for split in splits for i in split})
    para = None if args.no_paraphrase else paraphrases(sources, console)

    conditions = ["none", *AUGLY_METHODS, "all AugLy"] + (["paraphrase"] if para else [])
    scores = {c: [] for c in conditions}
    head_scores = {c: [] for c in conditions}
    added = {c: [] for c in conditions}
    for seed, split in enumerate(splits):
        texts = [items[i].text for i in split]
        labels = [items[i].label for i in split]
        base_X = embed(texts)
        for condition in conditions:
            extra_texts, extra_labels = [], []
            methods = AUGLY_METHODS if condition == "all AugLy" else [condition] if condition in AUGLY_METHODS else []
            for text, label in zip(texts, labels):
                for method in methods:
                    variants = augly_variants(text, method=method, n=args.n, seed=seed)
                    extra_texts += variants
                    extra_labels += [label] * len(variants)
                if condition == "paraphrase" and para.get(text):
                    extra_texts.append(para[text])
                    extra_labels.append(label)
            X = np.vstack([base_X, embed(extra_texts)]) if extra_texts else base_X
            y = np.array(labels + extra_labels)
            served, head = accuracies(X, y, test_X, test_y, prior)
            scores[condition].append(served)
            head_scores[condition].append(head)
            added[condition].append(len(extra_texts))
        console.print(f"seed {seed}: " + ", ".join(f"{c} {scores[c][-1]:.3f}" for c in conditions))

    base = np.array(scores["none"])
    table = Table("training data", "variants added", "test accuracy", "Δ points vs none (± s.e.)", "seeds won",
                  "verdict", "head alone: accuracy, Δ points",
                  title=f"Rotten Tomatoes, {args.labels} labels, {args.seeds} seeds, served model")
    head_base = np.array(head_scores["none"])
    rows = []
    for condition in conditions:
        acc = np.array(scores[condition])
        delta = 100 * (acc - base)
        se = delta.std(ddof=1) / np.sqrt(len(delta)) if len(delta) > 1 else 0.0
        won = int((acc > base).sum())
        verdict = "baseline" if condition == "none" else (
            "helps" if delta.mean() > 2 * se and delta.mean() > 0 else
            "hurts" if delta.mean() < -2 * se and delta.mean() < 0 else "no clear gain")
        head_acc = np.array(head_scores[condition])
        head_delta = 100 * (head_acc - head_base)
        rows.append({"condition": condition, "variants_added_mean": float(np.mean(added[condition])),
                     "accuracy_mean": float(acc.mean()), "delta_points_mean": float(delta.mean()),
                     "delta_points_se": float(se), "seeds_won": won, "verdict": verdict,
                     "head_accuracy_mean": float(head_acc.mean()), "head_delta_points_mean": float(head_delta.mean())})
        table.add_row(condition, f"{np.mean(added[condition]):.0f}", f"{acc.mean():.3f}",
                      "-" if condition == "none" else f"{delta.mean():+.2f} ± {se:.2f}",
                      "-" if condition == "none" else f"{won}/{len(acc)}", verdict,
                      f"{head_acc.mean():.3f}" + ("" if condition == "none" else f", {head_delta.mean():+.2f}"))
    console.print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "augment.json").write_text(json.dumps({"labels": args.labels, "seeds": args.seeds, "n": args.n,
                                                      "rows": rows, "scores": scores, "head_scores": head_scores},
                                                     indent=2))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.bar(range(len(rows)), [r["delta_points_mean"] for r in rows], yerr=[2 * r["delta_points_se"] for r in rows],
           color=["tab:gray" if r["condition"] == "none" else "tab:blue" for r in rows], capsize=4)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(rows)), [r["condition"] for r in rows], rotation=20, ha="right")
    ax.set_ylabel("Δ test accuracy, points (±2 s.e.)")
    ax.set_title(f"Augmented training data, {args.labels} Rotten Tomatoes labels")
    fig.tight_layout()
    fig.savefig(RESULTS / "augment.png", dpi=110)
    console.print(f"wrote {RESULTS / 'augment.json'} and augment.png")


if __name__ == "__main__":
    main()
