"""Hyperparameter search for a classification retrain (``LABELLOOP_TUNE_TRIALS``), with Optuna.

It searches what decides the served model's quality on the current labels:

- ``C``, the logistic-regression head's inverse regularisation (log scale, 0.01-100; the
  default, ``"auto"``, is chosen by `labelloop.model.classification.regularisation`);
- ``prior_strength``, how long the zero-shot prior keeps a share of the blend (0-50 labels);
- when the retrain fine-tunes the transformer, its ``learning_rate`` (1e-5-1e-4) and ``epochs`` (1-5).

Each trial is scored on the same stratified folds of the current labels: the model that would be
served (trained part plus prior, blended at the fold's label count) predicts the held-out fold;
the score is accuracy (single-label) or the mean per-item Jaccard similarity (multi-label). The
first trial is the defaults, so the best can never be worse than them on these folds. The study
stops at ``n_trials`` or after ``timeout_s`` (the trial then running finishes), keeping the best
so far. The best trial replaces the defaults only when it beats them by more than one standard
error of the paired per-fold differences: with a few hundred labels, the best of 30 trials on 5
folds is partly luck (`bench/tuning.py` saw cross-validated gains of 7 points turn into test
losses). TPE with a fixed seed: the same labels give the same search.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .classifier import BlendedClassifier, EmbeddingClassifier, ZeroShotClassifier, align_columns, embed
from .regularisation import AUTO, beats, jaccard
from ..embeddings import DEFAULT_MODEL

logger = logging.getLogger(__name__)

DEFAULTS = {"C": AUTO, "prior_strength": 10.0, "learning_rate": 5e-5, "epochs": 3}


@dataclass
class TuningResult:
    """``params``: the chosen trial's (the best, or the defaults when the best's gain is within
    noise: ``kept_defaults``); ``score``: its cross-validated score; ``default_score``: the
    defaults' on the same folds; ``best_trial_score``: the best trial's; ``trials``: finished
    trials; ``timed_out``: the budget ended it."""

    params: dict
    score: float
    default_score: float
    trials: int
    seconds: float
    timed_out: bool
    metric: str
    n_folds: int
    history: list = field(default_factory=list)
    best_trial_score: float | None = None
    kept_defaults: bool = False

    def as_meta(self) -> dict:
        return {"params": self.params, "cv_score": self.score, "default_cv_score": self.default_score,
                "best_trial_cv_score": self.best_trial_score, "kept_defaults": self.kept_defaults,
                "metric": self.metric, "n_folds": self.n_folds, "trials": self.trials,
                "seconds": round(self.seconds, 2), "timed_out": self.timed_out}


def _folds(y, multi_label: bool, n_folds: int, seed: int):
    import warnings

    from sklearn.model_selection import KFold, StratifiedKFold

    if multi_label:
        return list(KFold(n_folds, shuffle=True, random_state=seed).split(np.zeros(len(y))))
    with warnings.catch_warnings():  # "the least populated class has only 1 member": known, handled
        warnings.simplefilter("ignore", UserWarning)
        return list(StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))


def usable_folds(y, *, multi_label: bool, max_folds: int = 5) -> int:
    """How many folds the labels allow (0: too few). Two classes need at least one item per fold,
    so that every training fold has two classes to tell apart; rarer classes are stratified as
    well as they can be (a fold may miss them)."""
    if multi_label:
        return min(max_folds, len(y)) if len(y) >= 4 else 0
    _, counts = np.unique(np.asarray(y, dtype=object).astype(str), return_counts=True)
    folds = min(max_folds, int(np.sort(counts)[-2])) if len(counts) >= 2 else 0
    return folds if folds >= 2 else 0


def _score(proba: np.ndarray, truth, labels: np.ndarray, multi_label: bool) -> float:
    """Accuracy, or the mean per-item Jaccard of label collections (`regularisation.jaccard`);
    true labels outside ``labels`` never reach here (`kinds.classification` drops them)."""
    if multi_label:
        from sklearn.preprocessing import MultiLabelBinarizer

        Y = MultiLabelBinarizer(classes=list(labels)).fit_transform(truth)  # columns in ``labels`` order
        return float(jaccard(proba, Y).mean())
    return float(np.mean(labels[proba.argmax(axis=1)] == np.asarray(truth, dtype=object)))


def tune(texts: Sequence[str], y, *, labels: Sequence[str], multi_label: bool = False,
         model_name: str = DEFAULT_MODEL, n_trials: int = 20, timeout_s: float = 120.0, finetune: bool = False,
         max_folds: int = 5, seed: int = 0) -> TuningResult | None:
    """Search the parameters (see the module docstring) on ``texts`` ``(n,)`` and ``y`` ``(n,)``
    (label collections when ``multi_label``). None when the labels are too few to cross-validate."""
    import optuna

    y = [tuple(v) for v in y] if multi_label else [str(v) for v in y]
    unknown = set(label for v in y for label in (v if multi_label else (v,))) - set(labels)
    if unknown:
        raise ValueError(f"labels outside {list(labels)}: {sorted(unknown)[:10]}")
    n_folds = usable_folds(y, multi_label=multi_label, max_folds=max_folds)
    if n_folds == 0 or n_trials < 1:
        return None
    started = time.perf_counter()
    X = embed(list(texts), model_name)
    folds = _folds(y, multi_label, n_folds, seed)
    prior = ZeroShotClassifier(labels=list(labels), model_name=model_name, multi_label=multi_label).fit()
    prior_proba = prior.predict_proba(X)
    label_array = np.asarray(list(labels), dtype=object)
    texts = list(texts)

    def trained_proba(params, train, test):
        if finetune:
            from .finetune import FineTunedClassifier

            model = FineTunedClassifier(model_name=model_name, multi_label=multi_label,
                                        learning_rate=params["learning_rate"], epochs=params["epochs"])
            model.fit([texts[i] for i in train], [y[i] for i in train])
            return align_columns(model.predict_proba([texts[i] for i in test]), model.classes_, labels)
        model = EmbeddingClassifier(model_name=model_name, multi_label=multi_label, C=params["C"])
        model.fit(X[train], [y[i] for i in train])
        return align_columns(model.predict_proba(X[test]), model.classes_, labels)

    def evaluate(params) -> list[float]:
        scores = []
        for train, test in folds:
            weight = BlendedClassifier(n_labels=len(train), prior_strength=params["prior_strength"]).weight
            blended = weight * trained_proba(params, train, test) + (1 - weight) * prior_proba[test]
            scores.append(_score(blended, [y[i] for i in test], label_array, multi_label))
        return scores

    def objective(trial) -> float:
        params = {"prior_strength": trial.suggest_float("prior_strength", 0.0, 50.0)}
        if finetune:
            params["learning_rate"] = trial.suggest_float("learning_rate", 1e-5, 1e-4, log=True)
            params["epochs"] = trial.suggest_int("epochs", 1, 5)
        else:
            params["C"] = trial.suggest_float("C", 1e-2, 1e2, log=True)
        scores = evaluate(params)
        trial.set_user_attr("folds", scores)
        return float(np.mean(scores))

    # the defaults are scored first, outside the study: their C ("auto") is no point of its range
    defaults = {k: DEFAULTS[k] for k in (("prior_strength", "learning_rate", "epochs") if finetune
                                          else ("prior_strength", "C"))}
    default_scores = evaluate(defaults)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    if n_trials > 1:
        left = timeout_s - (time.perf_counter() - started)
        if left > 0:
            study.optimize(objective, n_trials=n_trials - 1, timeout=left, gc_after_trial=False)
    done = [(defaults, default_scores)] + [(t.params, t.user_attrs["folds"]) for t in study.trials
                                           if t.value is not None]
    means = [float(np.mean(scores)) for _, scores in done]
    best = max(range(len(done)), key=lambda i: (means[i], -i))  # ties: the earlier trial (the defaults first)
    # the best of many trials on a few folds is partly luck: it must beat the defaults by more
    # than one standard error of the paired fold differences, or the defaults stay
    significant = beats(done[best][1], default_scores)
    chosen = best if significant else 0
    seconds = time.perf_counter() - started
    return TuningResult(dict(done[chosen][0]), means[chosen], means[0], len(done), seconds,
                        timed_out=len(done) < n_trials, metric="jaccard" if multi_label else "accuracy",
                        n_folds=n_folds, history=list(enumerate(means)),
                        best_trial_score=means[best], kept_defaults=not significant)
