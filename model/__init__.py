"""Pure ML for labelloop: embeddings, classifiers, model storage, offline datasets.

Nothing here imports Label Studio.
"""
from .classification.classifier import EmbeddingClassifier, ZeroShotClassifier, confidence
from .embeddings import CachedEmbedder, TransformerEncoder, get_embedder
from .errors import LabelloopError, ModelNotFoundError, NotEnoughLabelsError
from .store import ModelStore

__all__ = [
    "CachedEmbedder", "EmbeddingClassifier", "LabelloopError", "ModelNotFoundError", "ModelStore",
    "NotEnoughLabelsError", "TransformerEncoder", "ZeroShotClassifier", "confidence", "get_embedder",
]
