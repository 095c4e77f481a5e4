"""Write predictions into Label Studio through the SDK, and move a project to a new model version.

Label Studio keeps only ``result``, ``score`` and ``model_version`` from a backend's /predict
answer, so predictions that carry a diversity ``cluster`` are written through the API instead.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator, Sequence

from .client import as_dict
from .filters import UNLABELLED, filters, lacks_model_version, query



def unlabelled_tasks(client, project_id: int, *, page_size: int = 1000,
                     with_predictions: bool = False) -> Iterator[dict]:
    """Tasks with no annotation yet, as ``{"id", "data"}`` dicts (plus ``"predictions"``, if asked)."""
    fields = {"fields": "all"} if with_predictions else {}
    for task in client.tasks.list(project=project_id, query=query(UNLABELLED), page_size=page_size, **fields):
        task = as_dict(task)
        row = {"id": task["id"], "data": task.get("data") or {}}
        if with_predictions:
            row["predictions"] = [as_dict(p) for p in task.get("predictions") or ()]
        yield row


def replace_unlabelled_predictions(client, project_id: int, predictions: Sequence[dict], *, model_version: str,
                                   cluster_top_k: int = 1000, should_stop: Callable[[], bool] | None = None,
                                   progress: Callable[[int], None] | None = None, keep: Sequence[int] = (),
                                   keep_versions: Sequence[str] = ()) -> int:
    """Swap the predictions of unlabelled tasks for ``predictions`` of ``model_version``.

    1. Old predictions of unlabelled tasks are deleted, so the database does not grow by one
       prediction per task and retrain, and Data Manager score averages see one version.
    2. Predictions are written most informative first; after the first, the project and its
       backends move to ``model_version``. The ``cluster_top_k`` first keep their
       cluster (one request each, see `push_predictions`); the rest go in bulk without it.
    ``should_stop`` is checked between writes: a newer model makes this refresh moot.
    Labelled tasks keep their predictions, and so do the tasks in ``keep`` (synthetic variants,
    whose prediction is their source's label) and every task holding a prediction of a version in
    ``keep_versions``. The filter is checked when the deletion runs, so a variant that `labelloop
    augment` created after the caller listed its tasks keeps its prediction too.
    Returns how many predictions were written.
    """
    client.actions.create(id="delete_tasks_predictions", project=project_id,
                          filters=filters(UNLABELLED, *map(lacks_model_version, keep_versions)),
                          selected_items={"all": True, "excluded": [int(t) for t in keep]})
    ordered = sorted(predictions, key=lambda p: p.get("score") or 0.0)
    for prediction in ordered[cluster_top_k:]:
        prediction.pop("cluster", None)
    if not ordered:
        return 0
    # Label Studio refuses a project version that no prediction carries yet: write one first
    created = push_predictions(client, project_id, ordered[:1], progress=progress)
    set_model_version(client, project_id, model_version)
    return created + push_predictions(client, project_id, ordered[1:], should_stop=should_stop,
                                      progress=progress)


def push_predictions(client, project_id: int, predictions: Sequence[dict], *, chunk_size: int = 1000,
                     workers: int = 4, should_stop: Callable[[], bool] | None = None,
                     progress: Callable[[int], None] | None = None) -> int:
    """Write ``{"task", "result", "score", "model_version", "cluster"?}`` dicts; returns how many.

    Label Studio 1.23's bulk import drops ``cluster``, so predictions that carry one are created
    one request each (a few threads in parallel, in input order); the others go in bulk,
    ``chunk_size`` at a time. Stops early, between writes, once ``should_stop()`` is true.
    """
    stop = should_stop or (lambda: False)
    with_cluster = [p for p in predictions if p.get("cluster") is not None]
    bulk = [p for p in predictions if p.get("cluster") is None]

    def create_one(prediction: dict) -> int:
        if stop():
            return 0
        client.predictions.create(**prediction)
        if progress is not None:
            progress(1)
        return 1

    with ThreadPoolExecutor(max_workers=workers) as pool:
        created = sum(pool.map(create_one, with_cluster))
    for start in range(0, len(bulk), chunk_size):
        if stop():
            break
        chunk = [{k: v for k, v in p.items() if k != "cluster"} for p in bulk[start:start + chunk_size]]
        response = client.projects.import_predictions(id=project_id, request=chunk)
        created += getattr(response, "created", None) or len(chunk)
        if progress is not None:
            progress(len(chunk))
    return created


def set_model_version(client, project_id: int, version: str) -> None:
    """Make ``version`` current for the project and its ML backends.

    The label stream's uncertainty sampling filters on the project's model version, and the
    Data Manager averages prediction scores over the backends' versions; both must move.
    """
    client.projects.update(id=project_id, model_version=version)
    for ml in client.ml.list(project=project_id):
        if ml.model_version != version:
            # Label Studio 1.23 re-validates the backend on PATCH: it needs url and project
            client.ml.update(id=ml.id, url=ml.url, project=project_id, model_version=version)
