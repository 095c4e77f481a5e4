"""The paired comparison the benches use to say whether a figure got worse with another encoder."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from encoder_baseline import paired_accuracy_se, paired_bootstrap  # noqa: E402


def _figures(run, seeds):
    """A higher-is-better accuracy and a lower-is-better label count, means over the seeds."""
    return {"accuracy": float(run["accuracy"][seeds].mean()), "labels to 95%": float(run["labels"][seeds].mean())}


def _run(accuracy, labels):
    return {"accuracy": np.asarray(accuracy, dtype=float), "labels": np.asarray(labels, dtype=float)}


def _verdicts(ours, baseline, n_seeds):
    rows = paired_bootstrap(_figures, ours, baseline, n_seeds=n_seeds, lower_is_better=lambda name: name == "labels to 95%")
    return {row["name"]: row for row in rows}


def test_identical_runs_are_the_same():
    rng = np.random.default_rng(0)
    run = _run(rng.uniform(0.7, 0.8, 10), rng.integers(150, 250, 10))
    rows = _verdicts(run, run, 10)
    assert {row["verdict"] for row in rows.values()} == {"same"}
    assert rows["accuracy"]["diff"] == 0 and rows["accuracy"]["se"] == 0


def test_a_consistent_shift_is_worse_in_the_figure_s_own_direction():
    rng = np.random.default_rng(1)
    accuracy, labels = rng.uniform(0.7, 0.8, 10), rng.integers(150, 250, 10).astype(float)
    baseline = _run(accuracy, labels)
    worse = _verdicts(_run(accuracy - 0.02, labels + 30), baseline, 10)
    assert worse["accuracy"]["verdict"] == "worse" and worse["labels to 95%"]["verdict"] == "worse"
    better = _verdicts(_run(accuracy + 0.02, labels - 30), baseline, 10)
    assert better["accuracy"]["verdict"] == "better" and better["labels to 95%"]["verdict"] == "better"


def test_a_shift_inside_the_seed_noise_is_the_same():
    # per seed the two runs differ by ±40 labels, on average by +2: within the noise of 8 seeds
    baseline = _run(np.full(8, 0.75), np.full(8, 200.0))
    ours = _run(np.full(8, 0.75), 200.0 + np.array([40, -40, 42, -38, 40, -40, 38, -42]) + 2)
    row = _verdicts(ours, baseline, 8)["labels to 95%"]
    assert row["diff"] == pytest.approx(2.0)
    assert row["se"] > 1.0 and row["verdict"] == "same"


def test_paired_accuracy_se_counts_only_the_items_the_models_disagree_on():
    a = np.array([True, True, False, False, True, True])
    assert paired_accuracy_se(a, a) == 0.0
    b = np.array([True, False, True, False, True, True])  # one discordant item each way
    assert paired_accuracy_se(a, b) == pytest.approx(np.sqrt(2.0) / 6)
