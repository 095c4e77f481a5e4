"""Text classification: the head over embeddings, zero-shot, fine-tuning, label issues, consensus."""
from __future__ import annotations

from pathlib import Path


def load_model(path: Path, meta: dict):
    """A stored classifier (see `labelloop.model.store.ModelStore.load`): fine-tuned or a head."""
    if meta.get("kind") == "finetuned":
        from .finetune import FineTunedClassifier

        return FineTunedClassifier.load(path)
    from .classifier import EmbeddingClassifier

    return EmbeddingClassifier.load(path)
