"""The project-trained tagger: a linear token-classification head over the local encoder.

Each word's features are its contextual embedding (the mean of its word pieces in the encoder's
last layer, all-MiniLM-L6-v2 by default) plus a few shape flags the uncased encoder cannot see
(capitalised, all caps, digits, @/# prefixes, URL). A multinomial logistic regression maps them
to ``O`` or a label. Why this and not spaCy's NER trained on the project's spans: it trains in
seconds, gives calibrated per-word probabilities (Cleanlab's token audit and the "how close did
a word come to being an entity" score need them), reuses the encoder the backend already
holds, and scored higher at 50 to 800 sentences in ``bench/ner.py``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from labelloop.model.errors import NotEnoughLabelsError

from .tokens import spans_from_labels, token_spans

N_SHAPE = 6


def _shape(token) -> list[float]:
    text = token.text
    return [float(text[:1].isupper()), float(text.isupper() and len(text) > 1), float(any(c.isdigit() for c in text)),
            float(text[:1] in "@#"), float(bool(token.like_url)), float(not text[:1].isalnum())]


def word_features(docs: Sequence, *, model_name: str = "default", max_length: int = 256,
                  batch_size: int = 32) -> list[np.ndarray]:
    """Per Doc, ``(len(doc), dim + 6)`` float32 features. Whitespace tokens and words past the
    encoder's ``max_length`` word pieces get a zero embedding."""
    from labelloop.model.embeddings import get_embedder

    encoder = get_embedder(model_name).encoder
    dim = encoder.dim
    out: list[np.ndarray] = [np.zeros((len(doc), dim + N_SHAPE), dtype=np.float32) for doc in docs]
    for i, doc in enumerate(docs):
        for j, token in enumerate(doc):
            out[i][j, dim:] = _shape(token)
    order = sorted(range(len(docs)), key=lambda i: len(docs[i]))
    for start in range(0, len(order), batch_size):
        idx = [i for i in order[start:start + batch_size] if len(docs[i])]
        if not idx:
            continue
        words = [[t.text for t in docs[i] if not t.is_space] or ["."] for i in idx]
        positions = [[j for j, t in enumerate(docs[i]) if not t.is_space] for i in idx]
        batch = encoder.tokenizer(words, is_split_into_words=True, truncation=True, max_length=max_length,
                                  padding=True, return_tensors="np")
        hidden = encoder.token_states(batch)  # torch or ONNX Runtime, whichever serves
        for b, i in enumerate(idx):
            sums = np.zeros((len(words[b]), dim), dtype=np.float32)
            counts = np.zeros(len(words[b]), dtype=np.float32)
            for piece, word in enumerate(batch.word_ids(b)):
                if word is not None:
                    sums[word] += hidden[b, piece]
                    counts[word] += 1
            vectors = sums / np.maximum(counts, 1)[:, None]
            for w, j in enumerate(positions[b]):
                out[i][j, :dim] = vectors[w]
    return out


class SpanTagger:
    """Per-word classes ``("O", *labels)`` from `word_features`.

    Parameters
    ----------
    labels : the config's labels (class ``k`` is ``labels[k - 1]``)
    C : inverse regularisation of the logistic regression
    """

    def __init__(self, labels: Sequence[str], *, C: float = 1.0, max_iter: int = 300, model_name: str = "default"):
        self.labels = tuple(labels)
        self.C = C
        self.max_iter = max_iter
        self.model_name = model_name

    @property
    def classes_(self) -> tuple[str, ...]:
        return ("O",) + self.labels

    def fit(self, features: Sequence[np.ndarray], labels: Sequence[np.ndarray]) -> "SpanTagger":
        """``features``: per sentence ``(n_words, d)``; ``labels``: per sentence ``(n_words,)`` class
        indices. Raises `NotEnoughLabelsError` when no word of any sentence is an entity."""
        from sklearn.linear_model import LogisticRegression

        X = np.concatenate(list(features)) if len(features) else np.zeros((0, 1))
        y = np.concatenate(list(labels)) if len(labels) else np.zeros(0, dtype=int)
        if not (y > 0).any():
            raise NotEnoughLabelsError("no annotated entity spans to learn from")
        if len(np.unique(y)) < 2:
            raise NotEnoughLabelsError("every annotated word is inside an entity: nothing shows what is not one")
        self.head_ = LogisticRegression(C=self.C, max_iter=self.max_iter).fit(X, y)
        self.n_sentences_ = len(features)
        return self

    def predict_proba(self, features: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Per sentence ``(n_words, 1 + len(labels))`` probabilities; classes never seen in
        training get 0."""
        if not len(features):
            return []
        lengths = [len(f) for f in features]
        X = np.concatenate(list(features))
        out = np.zeros((len(X), len(self.classes_)))
        if len(X):
            out[:, self.head_.classes_] = self.head_.predict_proba(X)
        return np.split(out, np.cumsum(lengths)[:-1])

    def save(self, directory: Path) -> None:
        import joblib

        joblib.dump(self.head_, Path(directory) / "tagger.joblib")
        (Path(directory) / "tagger.json").write_text(json.dumps(
            {"labels": list(self.labels), "C": self.C, "model_name": self.model_name,
             "n_sentences": self.n_sentences_}), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> "SpanTagger":
        import joblib

        meta = json.loads((Path(directory) / "tagger.json").read_text(encoding="utf-8"))
        tagger = cls(meta["labels"], C=meta["C"], model_name=meta["model_name"])
        tagger.head_ = joblib.load(Path(directory) / "tagger.joblib")
        tagger.n_sentences_ = meta["n_sentences"]
        return tagger


def out_of_fold_proba(features: Sequence[np.ndarray], labels: Sequence[np.ndarray], tagger_labels: Sequence[str], *,
                      n_folds: int = 5, seed: int = 0, C: float = 1.0, progress=None) -> list[np.ndarray]:
    """Per sentence, probabilities from a tagger that never saw it (K-fold over sentences).

    A fold whose training part has no entity gives all-``O`` probabilities for its sentences."""
    from sklearn.model_selection import KFold

    n = len(features)
    out: list[np.ndarray | None] = [None] * n
    n_folds = max(2, min(n_folds, n))
    for train, test in KFold(n_folds, shuffle=True, random_state=seed).split(np.arange(n)):
        try:
            tagger = SpanTagger(tagger_labels, C=C).fit([features[i] for i in train], [labels[i] for i in train])
            probs = tagger.predict_proba([features[i] for i in test])
        except NotEnoughLabelsError:
            probs = [np.eye(1 + len(tagger_labels))[np.zeros(len(features[i]), dtype=int)] for i in test]
        for i, p in zip(test, probs):
            out[i] = p
        if progress:
            progress(1)
    return out  # type: ignore[return-value]


def tagged_spans(docs: Sequence, proba: Sequence[np.ndarray], classes: Sequence[str]) -> list[list[tuple]]:
    """Per Doc, the ``(start_token, end_token, label)`` spans of its most probable class per word."""
    return [token_spans(doc, spans_from_labels(doc, p.argmax(axis=1), classes, p)) for doc, p in zip(docs, proba)]
