"""Full fine-tuning of a transformer for sequence classification: the optional, costlier model.

`FineTunedClassifier` has the same contract as `EmbeddingClassifier` (``fit``, ``predict_proba``,
``classes_``, ``save``/``load``), so the model store, the predictor and cross-validation take
either. It trains every weight of the encoder plus a classification head with AdamW, dynamic
padding and a linear schedule, on the GPU when there is one.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .classifier import _TextClassifierBase, _as_label_set
from ..embeddings import DEFAULT_MODEL, resolve_model_path, token_batches
from ..errors import NotEnoughLabelsError

_META_FILE = "meta.json"
_WEIGHTS_DIR = "transformer"


class FineTunedClassifier(_TextClassifierBase):
    """Fine-tunes ``model_name`` end to end.

    Parameters
    ----------
    model_name : str
        ``"default"`` (offline all-MiniLM-L6-v2), a local path or a Hugging Face name.
    epochs, learning_rate, batch_size, max_length : training budget.
    multi_label : bool
        One sigmoid per label (``BCEWithLogits``) instead of a softmax.
    device : str or None
        ``"cuda"`` when available, else ``"cpu"``.
    """

    def __init__(self, *, model_name: str = DEFAULT_MODEL, epochs: int = 3, learning_rate: float = 5e-5,
                 batch_size: int = 16, max_length: int = 128, multi_label: bool = False,
                 threshold: float = 0.5, device: str | None = None, random_state: int = 0):
        self.model_name = model_name
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.max_length = max_length
        self.multi_label = multi_label
        self.threshold = threshold
        self.device = device
        self.random_state = random_state

    def _device(self) -> str:
        import torch

        return self.device or ("cuda" if torch.cuda.is_available() else "cpu")

    def _targets(self, y):
        if self.multi_label:
            sets = [_as_label_set(v) for v in y]
            self.classes_ = np.asarray(sorted({label for s in sets for label in s}), dtype=object)
            if len(self.classes_) == 0:
                raise NotEnoughLabelsError("the annotations hold no labels")
            index = {c: i for i, c in enumerate(self.classes_)}
            target = np.zeros((len(sets), len(self.classes_)), dtype=np.float32)
            for row, labels in enumerate(sets):
                target[row, [index[label] for label in labels]] = 1.0
            return target
        y = np.asarray(y)
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise NotEnoughLabelsError("fine-tuning needs at least two labelled classes")
        return np.searchsorted(self.classes_, y)

    def fit(self, X, y):
        """``X``: ``(n_samples,)`` texts; ``y``: labels, or label collections for multi-label."""
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer, get_linear_schedule_with_warmup

        texts = list(X)
        if len(texts) != len(y):
            raise ValueError(f"X has {len(texts)} items but y has {len(y)}")
        if any(not isinstance(t, str) for t in texts):
            raise TypeError("FineTunedClassifier needs texts, not precomputed embeddings")
        target = self._targets(list(y))
        torch.manual_seed(self.random_state)
        path = resolve_model_path(self.model_name)
        device = self._device()
        self.tokenizer_ = AutoTokenizer.from_pretrained(path)
        self.model_ = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=len(self.classes_),
            problem_type="multi_label_classification" if self.multi_label else "single_label_classification",
        ).to(device)
        optimizer = torch.optim.AdamW(self.model_.parameters(), lr=self.learning_rate)
        steps = self.epochs * -(-len(texts) // self.batch_size)
        schedule = get_linear_schedule_with_warmup(optimizer, int(0.1 * steps), steps)
        rng = np.random.default_rng(self.random_state)
        self.model_.train()
        for _ in range(self.epochs):
            for batch in np.array_split(rng.permutation(len(texts)), max(1, -(-len(texts) // self.batch_size))):
                enc = self.tokenizer_([texts[i] for i in batch], padding=True, truncation=True,
                                      max_length=self.max_length, return_tensors="pt").to(device)
                labels = torch.as_tensor(target[batch]).to(device)
                loss = self.model_(**enc, labels=labels).loss
                loss.backward()
                optimizer.step()
                schedule.step()
                optimizer.zero_grad()
        self.model_.eval()
        return self

    def predict_proba(self, X) -> np.ndarray:
        """Probabilities of shape ``(n_samples, n_classes)``."""
        import torch

        texts = list(X)
        out = np.zeros((len(texts), len(self.classes_)))
        device = next(self.model_.parameters()).device
        with torch.inference_mode():
            for idx, arrays in token_batches(self.tokenizer_, texts, batch_size=64, max_length=self.max_length):
                enc = {key: torch.from_numpy(value).to(device) for key, value in arrays.items()}
                logits = self.model_(**enc).logits.float()
                probs = torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=-1)
                out[idx] = probs.cpu().numpy()
        return out

    def save(self, directory: str | os.PathLike) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.model_.save_pretrained(directory / _WEIGHTS_DIR)
        self.tokenizer_.save_pretrained(directory / _WEIGHTS_DIR)
        meta = {"kind": "finetuned", "model_name": self.model_name, "classes": [str(c) for c in self.classes_],
                "multi_label": self.multi_label, "params": self.get_params()}
        (directory / _META_FILE).write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "FineTunedClassifier":
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        directory = Path(directory)
        meta = json.loads((directory / _META_FILE).read_text())
        clf = cls(**meta["params"])
        clf.classes_ = np.asarray(meta["classes"], dtype=object)
        clf.tokenizer_ = AutoTokenizer.from_pretrained(directory / _WEIGHTS_DIR)
        clf.model_ = AutoModelForSequenceClassification.from_pretrained(directory / _WEIGHTS_DIR)
        clf.model_.to(clf._device()).eval()
        return clf
