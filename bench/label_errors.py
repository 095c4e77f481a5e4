"""How well the audit finds injected label errors, against a naive baseline, and how it scales.

Two real offline datasets (Rotten Tomatoes, 2 classes; ChatterBot topics, 21 classes) get 10% and
20% class-conditional label noise (`cleanlab.benchmarking.noise_generation`), with several seeds.
Out-of-sample probabilities come from the audit's ensemble, cross-validated over its 10 folds
(the served head and a k-NN vote over cached all-MiniLM-L6-v2 embeddings, TF-IDF logistic
regression over the texts; the synthetic scale run has no texts, so no TF-IDF head). Printed per dataset and
noise level (mean over seeds):

- Cleanlab (`find_label_issues`): precision and recall of the flagged set, AUPRC of the
  label-quality ranking against the injected errors;
- naive baseline: flag wherever the cross-validated prediction disagrees with the given label;
  its precision, recall and AUPRC (a 0/1 ranking).

The audit flags that same set (`label_issues.FILTER_BY`), so the two precisions and recalls
match: what Cleanlab adds is the order of the review queue, which AUPRC measures.

Scale (``--scale N``, default 100,000): the audit's detection on N synthetic clustered 384-d
vectors (there are not that many real offline texts), with 10% flipped labels, 1% planted
near-duplicates and 0.5% planted outliers: label issues (cross-validation + Cleanlab), then
near-duplicates and outliers (k-NN graph + Datalab). Wall time per part, peak memory, and the
recall of the planted items. Embedding time is reported apart, extrapolated from the measured
all-MiniLM-L6-v2 throughput on the real texts above.

Usage: python bench/label_errors.py [--seeds 3] [--scale 100000]
"""
from __future__ import annotations

import argparse
import os
import resource
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from sklearn.metrics import average_precision_score  # noqa: E402

from labelloop.model.classification.classifier import embed  # noqa: E402
from labelloop.model.data_issues import find_data_issues  # noqa: E402
from labelloop.model.datasets import chatterbot_topics, rotten_tomatoes  # noqa: E402
from labelloop.model.classification.label_issues import find_label_issues  # noqa: E402


def inject_noise(y_codes: np.ndarray, k: int, rate: float, seed: int) -> np.ndarray:
    from cleanlab.benchmarking.noise_generation import generate_noise_matrix_from_trace, generate_noisy_labels

    py = np.bincount(y_codes, minlength=k) / len(y_codes)
    noise_matrix = generate_noise_matrix_from_trace(k, trace=k * (1 - rate), py=py, valid_noise_matrix=True,
                                                    seed=seed)
    np.random.seed(seed)  # generate_noisy_labels draws from numpy's global generator
    return generate_noisy_labels(y_codes, noise_matrix)


def scores(flagged: np.ndarray, ranking: np.ndarray, errors: np.ndarray) -> tuple[float, float, float]:
    tp = (flagged & errors).sum()
    return tp / max(1, flagged.sum()), tp / max(1, errors.sum()), average_precision_score(errors, ranking)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rt-size", type=int, default=3000)
    parser.add_argument("--scale", type=int, default=100_000, help="items in the scale run (0: skip)")
    args = parser.parse_args()
    console = Console()

    table = Table(title=f"Injected label errors, mean over {args.seeds} seeds")
    for col in ("dataset", "noise", "cleanlab P", "cleanlab R", "cleanlab AUPRC", "naive P", "naive R",
                "naive AUPRC"):
        table.add_column(col, justify="right" if col not in ("dataset",) else "left")
    datasets = (("rotten_tomatoes", rotten_tomatoes(args.rt_size, seed=1)),
                ("chatterbot_topics", chatterbot_topics())) if args.seeds > 0 else ()  # --seeds 0: the scale run only
    for name, items in datasets:
        t = time.perf_counter()
        texts = [it.text for it in items]  # the audit's TF-IDF head reads them, as in the product
        X = embed(texts, "default")
        seconds = time.perf_counter() - t
        texts_per_s = len(items) / seconds
        console.print(f"{name}: {len(items)} texts embedded in {seconds:.1f} s (reported apart)")
        classes, y = np.unique([it.label for it in items], return_inverse=True)
        for rate in (0.1, 0.2):
            rows = []
            for seed in range(args.seeds):
                noisy = inject_noise(y, len(classes), rate, seed)
                errors = noisy != y
                issues = find_label_issues(X, classes[noisy].astype(str), random_state=seed, texts=texts)
                quality = np.nan_to_num(issues.quality, nan=1.0)
                clean = scores(issues.is_issue, 1 - quality, errors)
                disagree = issues.scored & (issues.suggested != issues.given)
                naive = scores(disagree, disagree.astype(float), errors)
                rows.append(clean + naive)
            mean = np.mean(rows, axis=0)
            table.add_row(name, f"{rate:.0%}", *(f"{v:.3f}" for v in mean))
    if datasets:
        console.print(table)

    if args.scale:
        rng = np.random.default_rng(0)
        k, dim, n = 20, 384, args.scale
        centers = rng.normal(size=(k, dim)).astype(np.float32)
        y = rng.integers(k, size=n)
        X = centers[y] + rng.normal(scale=1.5, size=(n, dim)).astype(np.float32)
        dups = rng.choice(n, size=n // 100, replace=False)
        originals = (dups + 1 + rng.integers(n - 1, size=len(dups))) % n
        X[dups] = X[originals] + rng.normal(scale=0.01, size=(len(dups), dim)).astype(np.float32)
        y[dups] = y[originals]
        free = np.setdiff1d(np.arange(n), np.concatenate([dups, originals]))
        outliers = rng.choice(free, size=n // 200, replace=False)
        X[outliers] = rng.normal(scale=1.5, size=(len(outliers), dim))  # no cluster centre
        X /= np.linalg.norm(X, axis=1, keepdims=True)
        noisy = y.copy()
        flip = rng.random(n) < 0.1
        noisy[flip] = rng.integers(k, size=flip.sum())
        t = time.perf_counter()
        issues = find_label_issues(X, noisy.astype(str))
        label_s = time.perf_counter() - t
        t = time.perf_counter()
        data = find_data_issues(X)
        data_s = time.perf_counter() - t
        peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
        errors = noisy != y
        p, r, auprc = scores(issues.is_issue, 1 - np.nan_to_num(issues.quality, nan=1.0), errors)
        total = label_s + data_s
        # the encoder the product uses (LABELLOOP_ENCODER_RUNTIME), bypassing both caches
        from labelloop.model.embeddings import get_embedder
        encoder = get_embedder("default").encoder
        sample = [it.text for it in rotten_tomatoes(3000, seed=2)]
        encoder.encode(sample[:64])  # warm-up
        t = time.perf_counter()
        encoder.encode(sample)
        texts_per_s = len(sample) / (time.perf_counter() - t)
        with_embedding = total + n / texts_per_s
        peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
        verdict = "meets" if with_embedding < 600 and peak_gb < 4 else "MISSES"
        console.print(f"scale: {n} items x {dim}-d, {k} classes: label issues {label_s:.1f} s "
                      f"(P {p:.3f} R {r:.3f} AUPRC {auprc:.3f}); near-duplicates + outliers {data_s:.1f} s "
                      f"(planted near-duplicates found {data.is_near_duplicate[dups].mean():.2f}, "
                      f"planted outliers found {data.is_outlier[outliers].mean():.2f}; flagged "
                      f"{data.is_near_duplicate.sum()} / {data.is_outlier.sum()})")
        console.print(f"scale: audit {total:.1f} s; embedding {n} texts at the {texts_per_s:.0f} texts/s the "
                      f"{getattr(encoder, 'runtime', 'torch')} encoder gave on 3,000 Rotten Tomatoes snippets here: "
                      f"{n / texts_per_s / 60:.1f} min; together {with_embedding / 60:.1f} min, peak RSS "
                      f"{peak_gb:.2f} GB ({verdict} the 10 min / 4 GB target)")

if __name__ == "__main__":
    main()
