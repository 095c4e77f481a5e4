"""Hyperparameter search on retrain (`labelloop.model.classification.tuning`)."""
import numpy as np
import pytest

from labelloop.kinds import kind_for
from labelloop.label_config import load
from labelloop.label_config.spec import parse_label_config
from labelloop.model.classification.regularisation import GRID
from labelloop.model.classification.tuning import _score, tune, usable_folds
from labelloop.model.datasets import rotten_tomatoes

SWAP = {"Positive": "Negative", "Negative": "Positive"}


def test_tuning_turns_down_a_prior_that_misleads():
    # labels named against their texts: the zero-shot prior is wrong, the default blend leans on it
    items = rotten_tomatoes(80, seed=5)
    texts, y = [it.text for it in items], [SWAP[it.label] for it in items]
    result = tune(texts, y, labels=["Positive", "Negative"], n_trials=25, timeout_s=120)
    assert result.trials == 25 and not result.timed_out and result.metric == "accuracy"
    assert result.score > result.default_score and not result.kept_defaults  # a clear gain on the same folds
    assert result.params["prior_strength"] < 10.0
    assert set(result.params) == {"C", "prior_strength"}
    meta = result.as_meta()
    assert meta["default_cv_score"] == result.default_score and meta["params"] == result.params
    again = tune(texts, y, labels=["Positive", "Negative"], n_trials=25, timeout_s=120)
    assert again.params == result.params  # seeded


def test_a_study_out_of_time_keeps_its_best_trial_so_far():
    items = rotten_tomatoes(40, seed=6)
    result = tune([it.text for it in items], [it.label for it in items], labels=["Positive", "Negative"],
                  n_trials=10_000, timeout_s=0.5)
    assert result.timed_out and 1 <= result.trials < 10_000
    assert result.best_trial_score == max(score for _, score in result.history) >= result.default_score
    assert result.score == (result.default_score if result.kept_defaults else result.best_trial_score)


def test_too_few_labels_skip_tuning():
    assert usable_folds(["a", "a", "b"], multi_label=False) == 0
    assert usable_folds(["a"] * 9 + ["b"] * 3, multi_label=False) == 3
    assert tune(["x", "y", "z"], ["a", "a", "b"], labels=["a", "b"], n_trials=5) is None


def test_multi_label_trials_are_scored_by_per_item_jaccard():
    labels = np.asarray(["a", "b", "c"], dtype=object)
    proba = np.array([[0.9, 0.6, 0.1], [0.2, 0.3, 0.1]])  # chosen: {a, b}, then {b} (its most likely)
    assert _score(proba, [("a",), ("b", "c")], labels, multi_label=True) == pytest.approx((1 / 2 + 1 / 2) / 2)
    assert _score(proba, [("a", "b"), ("b",)], labels, multi_label=True) == 1.0


def test_labels_outside_the_config_are_refused_before_any_work():
    with pytest.raises(ValueError, match="'z'"):
        tune(["x", "y", "z", "w"], [("a",), ("z",), ("a",), ("b",)], labels=["a", "b"], multi_label=True)


def test_a_tuned_fit_carries_its_metadata_and_serves_with_the_tuned_prior():
    spec = parse_label_config(load("text_classification"))
    kind = kind_for(spec)
    items = rotten_tomatoes(40, seed=8)

    class Item:
        def __init__(self, i, it):
            self.task_id, self.text, self.labels = i, it.text, (SWAP[it.label],)

    model = kind.fit([Item(i, it) for i, it in enumerate(items)], spec, model_name="default", tune_trials=8,
                     tune_seconds=60, C=4.0)  # the study's C wins over the untuned one
    params = model.tuning_["params"]
    assert model.C == pytest.approx(params["C"]) and model.tuning_["trials"] == 8
    prior = kind.prior_model(spec, "default")
    served = kind.with_prior(model, prior, {"n_labels": 40, "tuning": model.tuning_}, prior_strength=10.0)
    assert served.prior_strength == pytest.approx(params["prior_strength"])
    untuned = kind.fit([Item(i, it) for i, it in enumerate(items)], spec, model_name="default")
    assert not hasattr(untuned, "tuning_") and untuned.C == "auto" and untuned.C_ in GRID
    assert kind.fit([Item(i, it) for i, it in enumerate(items)], spec, model_name="default", C=4.0).C == 4.0
    assert np.isfinite(served.predict_proba([items[0].text])).all()
