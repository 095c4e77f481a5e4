"""How well the audit finds injected label errors, against a naive baseline, and how it scales.

Two real offline datasets (Rotten Tomatoes, 2 classes; ChatterBot topics, 21 classes) get 10% and
20% class-conditional label noise (`cleanlab.benchmarking.noise_generation`), with several seeds.
Out-of-sample probabilities come from 5-fold cross-validation of the served classifier over
cached all-MiniLM-L6-v2 embeddings. Printed per dataset and noise level (mean over seeds):

- Cleanlab (`find_label_issues`): precision and recall of the flagged set, AUPRC of the
  label-quality ranking against the injected errors;
- naive baseline: flag wherever the cross-validated prediction disagrees with the given label;
  its precision, recall and AUPRC (a 0/1 ranking).

Scale (``--scale N``, default 100,000): the label-issue part of the audit on N synthetic
clustered 384-d vectors (there are not that many real offline texts), with wall time and peak
memory. Near-duplicate and outlier detection are not part of the audit yet, so they are not
timed here.

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

from labelloop.model.classifier import embed  # noqa: E402
from labelloop.model.datasets import chatterbot_topics, rotten_tomatoes  # noqa: E402
from labelloop.model.label_issues import find_label_issues  # noqa: E402


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
    for name, items in (("rotten_tomatoes", rotten_tomatoes(args.rt_size, seed=1)),
                        ("chatterbot_topics", chatterbot_topics())):
        t = time.perf_counter()
        X = embed([it.text for it in items], "default")
        console.print(f"{name}: {len(items)} texts embedded in {time.perf_counter() - t:.1f} s (reported apart)")
        classes, y = np.unique([it.label for it in items], return_inverse=True)
        for rate in (0.1, 0.2):
            rows = []
            for seed in range(args.seeds):
                noisy = inject_noise(y, len(classes), rate, seed)
                errors = noisy != y
                issues = find_label_issues(X, classes[noisy].astype(str), random_state=seed)
                quality = np.nan_to_num(issues.quality, nan=1.0)
                clean = scores(issues.is_issue, 1 - quality, errors)
                disagree = issues.scored & (issues.suggested != issues.given)
                naive = scores(disagree, disagree.astype(float), errors)
                rows.append(clean + naive)
            mean = np.mean(rows, axis=0)
            table.add_row(name, f"{rate:.0%}", *(f"{v:.3f}" for v in mean))
    console.print(table)

    if args.scale:
        rng = np.random.default_rng(0)
        k, dim = 20, 384
        centers = rng.normal(size=(k, dim)).astype(np.float32)
        y = rng.integers(k, size=args.scale)
        X = centers[y] + rng.normal(scale=1.5, size=(args.scale, dim)).astype(np.float32)
        X /= np.linalg.norm(X, axis=1, keepdims=True)
        noisy = y.copy()
        flip = rng.random(args.scale) < 0.1
        noisy[flip] = rng.integers(k, size=flip.sum())
        t = time.perf_counter()
        issues = find_label_issues(X, noisy.astype(str))
        seconds = time.perf_counter() - t
        peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
        errors = noisy != y
        p, r, auprc = scores(issues.is_issue, 1 - np.nan_to_num(issues.quality, nan=1.0), errors)
        verdict = "meets" if seconds < 600 and peak_gb < 4 else "MISSES"
        console.print(f"scale: {args.scale} items x {dim}-d, {k} classes: label issues in {seconds:.1f} s, "
                      f"peak RSS {peak_gb:.2f} GB ({verdict} the 10 min / 4 GB target for this part); "
                      f"P {p:.3f} R {r:.3f} AUPRC {auprc:.3f}")


if __name__ == "__main__":
    main()
