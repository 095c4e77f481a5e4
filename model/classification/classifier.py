"""Text classifiers with the scikit-learn contract.

`EmbeddingClassifier`: frozen sentence embeddings plus a logistic-regression head. It is a real
scikit-learn estimator, so `cross_val_predict` gives out-of-sample probabilities for free.

`ZeroShotClassifier`: the cold start, before any annotation exists. It scores each text by its
cosine similarity to the label names and deliberately reports low confidence.

Both accept ``X`` as a sequence of strings (embedded through the process-wide cache) or as a
precomputed float array of shape ``(n_samples, dim)``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import joblib
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.preprocessing import MultiLabelBinarizer

from ..embeddings import DEFAULT_MODEL, get_embedder
from ..errors import NotEnoughLabelsError
from .regularisation import AUTO, choose_C

_HEAD_FILE = "head.joblib"
_META_FILE = "meta.json"


def embed(X, model_name: str) -> np.ndarray:
    """Return embeddings of shape ``(n_samples, dim)`` for texts or an already-embedded array."""
    if isinstance(X, np.ndarray) and X.dtype.kind == "f":
        if X.ndim != 2:
            raise ValueError(f"precomputed embeddings must be 2-d, got shape {X.shape}")
        return X
    texts = list(X)
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise TypeError(f"X must hold strings; items {bad[:5]} are not")
    return get_embedder(model_name).embed(texts)


def align_columns(proba: np.ndarray, classes, labels) -> np.ndarray:
    """Reorder ``proba`` (columns in ``classes`` order) to ``labels`` order, shape ``(n, len(labels))``.

    A label the classifier does not know gets probability 0; classes not in ``labels`` are dropped.
    """
    known = [str(c) for c in classes]
    columns = np.asarray([known.index(str(label)) if str(label) in known else -1 for label in labels])
    if len(columns) == 0:
        return np.zeros((len(proba), 0))
    return np.where(columns >= 0, proba[:, np.maximum(columns, 0)], 0.0)


def confidence(proba: np.ndarray, *, multi_label: bool) -> np.ndarray:
    """The classifier's confidence in what it predicted, shape ``(n_samples,)``, in [0, 1].

    Single-label: the probability of the predicted class. Multi-label: the least certain of the
    per-label decisions, ``min_k max(p_k, 1 - p_k)``.
    """
    if proba.shape[0] == 0:
        return np.zeros(0)
    if multi_label:
        return np.maximum(proba, 1.0 - proba).min(axis=1)
    return proba.max(axis=1)


class _TextClassifierBase(ClassifierMixin, BaseEstimator):
    multi_label: bool
    threshold: float

    def predict(self, X):
        """Single-label: array ``(n_samples,)`` of labels. Multi-label: list of label tuples."""
        proba = self.predict_proba(X)
        if self.multi_label:
            chosen = proba >= self.threshold
            # an item always gets at least its most likely label
            chosen[np.arange(len(proba)), proba.argmax(axis=1)] = True
            return [tuple(self.classes_[row]) for row in chosen]
        return self.classes_[proba.argmax(axis=1)]


class EmbeddingClassifier(_TextClassifierBase):
    """Logistic regression over frozen sentence embeddings.

    Parameters
    ----------
    model_name : str
        Encoder used for string inputs: ``"default"`` (offline all-MiniLM-L6-v2), a local path
        or a Hugging Face name.
    C : float or "auto"
        Inverse regularisation strength of the logistic-regression head. ``"auto"`` chooses it
        per fit by cross-validation (`labelloop.model.classification.regularisation`); the value
        used is ``C_``.
    multi_label : bool
        If True, ``y`` holds a collection of labels per item and the head is one-vs-rest.
    threshold : float
        Multi-label decision threshold on each label's probability.
    class_weight : str or None
        Passed to `LogisticRegression`; "balanced" helps the skewed classes of early labelling.
    """

    def __init__(self, *, model_name: str = DEFAULT_MODEL, C: float | str = AUTO, multi_label: bool = False,
                 threshold: float = 0.5, class_weight: str | None = "balanced", max_iter: int = 1000):
        self.model_name = model_name
        self.C = C
        self.multi_label = multi_label
        self.threshold = threshold
        self.class_weight = class_weight
        self.max_iter = max_iter

    def fit(self, X, y):
        """Fit the head. ``X``: ``(n_samples,)`` texts or ``(n_samples, dim)`` embeddings.

        ``y``: ``(n_samples,)`` labels, or for multi-label a sequence of label collections.
        Raises `NotEnoughLabelsError` when there is nothing to learn a decision from.
        """
        y = list(y)
        if len(y) == 0:
            raise NotEnoughLabelsError("no labelled items to fit on")
        emb = embed(X, self.model_name)
        if len(emb) != len(y):
            raise ValueError(f"X has {len(emb)} items but y has {len(y)}")
        if self.multi_label:
            self.binarizer_ = MultiLabelBinarizer()
            y = self.binarizer_.fit_transform([_as_label_set(v) for v in y])
            self.classes_ = np.asarray(self.binarizer_.classes_, dtype=object)
            if y.shape[1] == 0:
                raise NotEnoughLabelsError("the annotations hold no labels")
        else:
            y = np.asarray(y)
            distinct = np.unique(y)
            if len(distinct) < 2:
                raise NotEnoughLabelsError(
                    f"only one class is labelled ({distinct[0]!r}); label at least two classes")
        self.C_ = choose_C(emb, y, make_head=self._head) if self.C == AUTO else float(self.C)
        self.head_ = self._head(self.C_).fit(emb, y)
        if not self.multi_label:
            self.classes_ = self.head_.classes_
        self.n_features_in_ = emb.shape[1]
        return self

    def _head(self, C: float):
        head = LogisticRegression(C=C, class_weight=self.class_weight, max_iter=self.max_iter)
        return OneVsRestClassifier(head) if self.multi_label else head

    def predict_proba(self, X) -> np.ndarray:
        """Probabilities of shape ``(n_samples, n_classes)``, columns in ``classes_`` order.

        Single-label rows sum to 1; multi-label columns are independent.
        """
        emb = embed(X, self.model_name)
        if len(emb) == 0:
            return np.zeros((0, len(self.classes_)))
        return self.head_.predict_proba(emb)

    def save(self, directory: str | os.PathLike) -> None:
        """Write the fitted head and its metadata into ``directory`` (the encoder is referenced by name)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        joblib.dump(self, directory / _HEAD_FILE)
        meta = {"kind": "head", "model_name": self.model_name, "classes": [str(c) for c in self.classes_],
                "multi_label": self.multi_label}
        (directory / _META_FILE).write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "EmbeddingClassifier":
        clf = joblib.load(Path(directory) / _HEAD_FILE)
        if not isinstance(clf, cls):
            raise TypeError(f"{directory} holds a {type(clf).__name__}, not an {cls.__name__}")
        return clf


class ZeroShotClassifier(_TextClassifierBase):
    """Cold-start classifier: cosine similarity between each text and each label name.

    Probabilities are a softmax over similarities (sigmoid around the row mean for multi-label),
    then shrunk halfway towards the uninformed prior by ``shrinkage``. The shrinkage keeps
    zero-shot scores honest: two labels never exceed 0.75 confidence, and every prediction from
    a trained head that is sure of itself outranks them.

    Parameters
    ----------
    labels : sequence of str
        The label names, also the ``classes_`` order.
    template : str
        How a label name is phrased before it is embedded; ``{label}`` is replaced.
    temperature : float
        Softmax temperature over cosine similarities.
    shrinkage : float in [0, 1]
        Weight of the uniform prior (or 0.5 per label for multi-label) mixed into each probability.
    """

    def __init__(self, *, labels: Sequence[str] = (), model_name: str = DEFAULT_MODEL,
                 multi_label: bool = False, threshold: float = 0.5, template: str = "This is {label}.",
                 temperature: float = 0.05, shrinkage: float = 0.5):
        self.labels = labels
        self.model_name = model_name
        self.multi_label = multi_label
        self.threshold = threshold
        self.template = template
        self.temperature = temperature
        self.shrinkage = shrinkage

    def fit(self, X=None, y=None):
        """Embed the label names. ``X`` and ``y`` are ignored: zero-shot needs no examples."""
        if len(self.labels) == 0:
            raise NotEnoughLabelsError("zero-shot classification needs at least one label name")
        self.classes_ = np.asarray(list(self.labels), dtype=object)
        prompts = [self.template.format(label=label) for label in self.labels]
        self.label_embeddings_ = embed(prompts, self.model_name)
        return self

    def predict_proba(self, X) -> np.ndarray:
        """Probabilities of shape ``(n_samples, n_labels)``."""
        emb = embed(X, self.model_name)
        k = len(self.classes_)
        if len(emb) == 0:
            return np.zeros((0, k))
        logits = (emb @ self.label_embeddings_.T) / self.temperature
        if self.multi_label:
            raw = 1.0 / (1.0 + np.exp(-(logits - logits.mean(axis=1, keepdims=True))))
            return (1 - self.shrinkage) * raw + self.shrinkage * 0.5
        logits -= logits.max(axis=1, keepdims=True)
        raw = np.exp(logits)
        raw /= raw.sum(axis=1, keepdims=True)
        return (1 - self.shrinkage) * raw + self.shrinkage / k


def _as_label_set(value) -> tuple:
    if isinstance(value, str):
        return (value,)
    return tuple(value)


class BlendedClassifier(_TextClassifierBase):
    """A trained classifier shrunk towards a prior (the zero-shot one) while labels are few.

    ``predict_proba = w * trained + (1 - w) * prior`` with ``w = n_labels / (n_labels + prior_strength)``.
    The prior matters for the first few dozen labels: on Rotten Tomatoes, 20 margin-picked labels
    give a head worse than zero-shot, and a blend at strength 10 is as good as zero-shot there
    while the trained head takes over soon after (the best area under the learning curve of 3,
    10 and 50 in ``bench/outcome.py``). Columns follow ``prior.classes_``;
    a class the trained model never saw gets only the prior's share.
    """

    def __init__(self, trained=None, prior=None, *, n_labels: int = 0, prior_strength: float = 10.0):
        self.trained = trained
        self.prior = prior
        self.n_labels = n_labels
        self.prior_strength = prior_strength

    @property
    def classes_(self):
        return self.prior.classes_

    @property
    def multi_label(self) -> bool:
        return self.prior.multi_label

    @property
    def threshold(self) -> float:
        return self.trained.threshold

    @property
    def model_name(self) -> str:
        return self.trained.model_name

    @property
    def weight(self) -> float:
        total = self.n_labels + self.prior_strength
        return 1.0 if total <= 0 else self.n_labels / total

    def fit(self, X=None, y=None):
        return self  # both parts arrive fitted

    def predict_proba(self, X) -> np.ndarray:
        """Probabilities of shape ``(n_samples, n_prior_classes)``."""
        prior = self.prior.predict_proba(X)
        if self.weight >= 1.0:
            prior = np.zeros_like(prior)
        trained = align_columns(self.trained.predict_proba(X), self.trained.classes_, self.prior.classes_)
        return self.weight * trained + (1.0 - self.weight) * prior
