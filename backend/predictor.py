"""Turn Label Studio tasks into Label Studio predictions, batch by batch, for any project kind.

One model call per batch of ``batch_size`` inputs, never one per task. A task whose text is
missing, empty or not a string gets an empty result; the others are unaffected. What a model
predicts and how it becomes regions is the project kind's business (`labelloop.kinds`).
"""
from __future__ import annotations

import logging
from typing import Any, Sequence

from labelloop.model import ranking
from labelloop.model.augment import synthetic_source
from labelloop.model.embeddings import get_embedder

logger = logging.getLogger(__name__)

UNUSABLE_SCORE = 1.0  # the highest score: Label Studio's uncertainty sampling serves it last


def _text_of(model_input) -> str:
    """The text behind a model input: the input itself, or its ``text`` (an LLM prompt)."""
    return model_input if isinstance(model_input, str) else model_input.text


def predict_tasks(tasks: Sequence[Any], spec, kind, model, model_version: str, *, batch_size: int,
                  max_chars: int, strategy: str = "margin", n_clusters: int = 0,
                  limit: int | None = None) -> list:
    """One entry per task, in order: a ``{"result", "score", "model_version"}`` dict, or ``[]``
    (no prediction now: Label Studio stores nothing and asks again later).

    ``kind.task_input`` says what the model reads of a task; ``kind.predict`` proposes a value
    and a score per input (lower means ask first; see `labelloop.model.ranking`), and
    ``kind.regions`` turns the value into Label Studio regions. A task without usable input gets
    an empty result and `UNUSABLE_SCORE` (served last); a variant from `labelloop augment` gets
    ``[]``, so its source's label stays its only prelabel. ``limit`` caps slow model calls (LLM
    drafts) over the whole call, for a ``model`` fresh from ``kind.serving_model``; a value of
    None from the kind (not drafted yet, or the endpoint failed) gives ``[]``.
    With ``n_clusters`` > 0, predicted tasks also get one of that many k-means clusters, which
    Label Studio's uncertainty stream rotates through for batch diversity.
    """
    predictions: list = [None] * len(tasks)
    usable: list[tuple[int, Any]] = []
    for i, task in enumerate(tasks):
        if isinstance(task, dict) and synthetic_source(task.get("data")) is not None:
            # a variant from `labelloop augment` is prelabelled with its source's label; a served
            # guess beside it (Retrieve Predictions) would hide that, as the refresh knows too
            predictions[i] = []
            continue
        model_input, problem = kind.task_input(task, spec, model, max_chars=max_chars)
        if model_input is None:
            task_id = task.get("id") if isinstance(task, dict) else None
            logger.warning("task %s gets no prelabel: %s", task_id, problem)
            # lower scores are asked first: a task nobody can label from its text goes last
            predictions[i] = {"result": [], "score": UNUSABLE_SCORE, "model_version": model_version}
        else:
            usable.append((i, model_input))

    # similar lengths in a batch keep padding small, as in a plain sorted forward pass
    usable.sort(key=lambda item: len(_text_of(item[1])))
    predicted = []
    for start in range(0, len(usable), batch_size):
        chunk = usable[start:start + batch_size]
        values, scores = kind.predict([x for _, x in chunk], spec, model, strategy=strategy, limit=limit)
        for (i, x), value, score in zip(chunk, values, scores):
            if value is None:
                predictions[i] = []
                continue
            predictions[i] = {"result": kind.regions(spec, value), "score": round(float(score), 6),
                              "model_version": model_version}
            predicted.append((i, x))
    if n_clusters > 0 and predicted:
        embeddings = get_embedder(model.model_name).embed([_text_of(x) for _, x in predicted])  # cache hits
        for (i, _), cluster in zip(predicted, ranking.diversity_clusters(embeddings, n_clusters=n_clusters)):
            predictions[i]["cluster"] = int(cluster)
    return predictions
