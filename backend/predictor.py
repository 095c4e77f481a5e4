"""Turn Label Studio tasks into Label Studio predictions, batch by batch, for any project kind.

One model call per batch of ``batch_size`` texts, never one per task. A task whose text is
missing, empty or not a string gets an empty result; the others are unaffected. What a model
predicts and how it becomes regions is the project kind's business (`labelloop.kinds`).
"""
from __future__ import annotations

import logging
from typing import Any, Sequence

from labelloop.model import ranking
from labelloop.model.embeddings import get_embedder
from labelloop.model.text_cleaning import clean_text

logger = logging.getLogger(__name__)

UNUSABLE_SCORE = 1.0  # the highest score: Label Studio's uncertainty sampling serves it last


def task_text(task: Any, value_key: str, *, max_chars: int) -> tuple[str | None, str | None]:
    """Return ``(text, None)`` for a usable task, else ``(None, reason)``.

    Over-long texts are cut to ``max_chars``; lone surrogates and control characters are
    replaced (`clean_text`), so the tokenizer never sees them.
    """
    if not isinstance(task, dict):
        return None, f"task is a {type(task).__name__}, not an object"
    data = task.get("data")
    if not isinstance(data, dict):
        return None, "task has no data object"
    if value_key not in data:
        return None, f"task data has no field {value_key!r}"
    value = data[value_key]
    if not isinstance(value, str):
        return None, f"task data field {value_key!r} is a {type(value).__name__}, not text"
    if not value.strip():
        return None, f"task data field {value_key!r} is empty"
    return clean_text(value[:max_chars]), None


def predict_tasks(tasks: Sequence[Any], spec, kind, model, model_version: str, *, batch_size: int,
                  max_chars: int, strategy: str = "margin", with_clusters: bool = False) -> list[dict]:
    """One prediction dict per task, in order: ``{"result", "score", "model_version"}``.

    ``kind.predict`` proposes a value and a score per text (lower means ask first; see
    `labelloop.model.ranking`), and ``kind.regions`` turns the value into Label Studio regions.
    A task without usable text gets an empty result and `UNUSABLE_SCORE` (served last).
    With ``with_clusters``, usable tasks also get a k-means ``cluster`` for batch diversity.
    """
    predictions: list[dict | None] = [None] * len(tasks)
    usable: list[tuple[int, str]] = []
    for i, task in enumerate(tasks):
        text, problem = task_text(task, spec.text_key, max_chars=max_chars)
        if text is None:
            task_id = task.get("id") if isinstance(task, dict) else None
            logger.warning("task %s gets no prelabel: %s", task_id, problem)
            # lower scores are asked first: a task nobody can label from its text goes last
            predictions[i] = {"result": [], "score": UNUSABLE_SCORE, "model_version": model_version}
        else:
            usable.append((i, text))

    # similar lengths in a batch keep padding small, as in a plain sorted forward pass
    usable.sort(key=lambda item: len(item[1]))
    for start in range(0, len(usable), batch_size):
        chunk = usable[start:start + batch_size]
        values, scores = kind.predict([text for _, text in chunk], spec, model, strategy=strategy)
        for (i, _), value, score in zip(chunk, values, scores):
            predictions[i] = {"result": kind.regions(spec, value), "score": round(float(score), 6),
                              "model_version": model_version}
    if with_clusters and usable:
        embeddings = get_embedder(model.model_name).embed([text for _, text in usable])  # cache hits
        for (i, _), cluster in zip(usable, ranking.diversity_clusters(embeddings)):
            predictions[i]["cluster"] = int(cluster)
    return predictions
