"""`labelloop rank`: make Label Studio serve the most informative task next.

1. The project's sampling becomes "Uncertainty sampling": the label stream serves tasks with a
   prediction of the project's model version, lowest score first (least-solved cluster first
   when the backend writes clusters: ``LABELLOOP_DIVERSITY_CLUSTERS``).
2. The backend is asked to refresh (``START_TRAINING`` through ``ml.train``): it retrains when
   there are labels, re-predicts every unlabelled task with a score (and a cluster, if
   on), and moves the project's model version. We wait until every unlabelled task has a current
   prediction, but for `labelloop augment`'s variants, which the refresh leaves alone. Tasks the
   backend could not predict (an LLM draft the endpoint refused) get none: once the project's
   version has moved and no more predictions arrive for ``settle`` seconds, the report names them.
3. A saved Data Manager view, "Most informative first", lists those unlabelled tasks by score.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from labelloop.kinds.base import extra_params_dict
from labelloop.model.errors import LabelloopError
from labelloop.model.ranking import STRATEGIES, UnknownStrategyError

from .augment import MODEL_VERSION as AUGMENT_VERSION
from .filters import UNLABELLED, has_model_version, lacks_model_version, query, save_view

VIEW_TITLE = "Most informative first"
WRITING = "unlabelled tasks with a current prediction"
WAITING = "the backend retrains (or drafts LLM answers) before it writes"
SAMPLING = "Uncertainty sampling"
#: the tasks a refresh re-predicts: unlabelled, less `labelloop augment`'s variants, which keep
#: their source's label (waiting for those to get a score would never end)
TO_RANK = (UNLABELLED, lacks_model_version(AUGMENT_VERSION))


class RankError(LabelloopError):
    """Ranking could not be set up (no backend, or the backend never refreshed)."""


@dataclass
class RankReport:
    project_id: int
    model_version: str
    unlabelled: int
    current: int
    view_id: int
    strategy: str
    #: how many unlabelled tasks have no current prediction, and the first few of their IDs
    missing: int = 0
    missing_ids: list[int] = field(default_factory=list)


def _count(client, project_id: int, *items: dict) -> int:
    return client.tasks.list(project=project_id, query=query(*items), page_size=1).response.total or 0


def _restore_version(client, project_id: int, version: str) -> None:
    from label_studio_sdk.core.api_error import ApiError

    try:
        client.projects.update(id=project_id, model_version=version)
    except ApiError:  # Label Studio refuses a version no prediction carries any more: "" it stays
        pass


def rank_project(client, project_id: int, *, strategy: str | None = None, timeout: float = 600.0,
                 settle: float = 20.0, progress: Progress | None = None) -> RankReport:
    if strategy is not None and strategy not in STRATEGIES:
        raise UnknownStrategyError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    backends = list(client.ml.list(project=project_id))
    if not backends:
        raise RankError(f"project {project_id} has no ML backend: connect labelloop first "
                        "(Project > Settings > Model, or `labelloop demo`)")
    ml = backends[0]
    params = extra_params_dict(ml.extra_params)  # unreadable settings fail here, before any work
    if strategy is not None:
        params = {**params, "strategy": strategy}
        # kept as the user's dialog keeps it (JSON text), so the dialog still shows it
        stored = json.dumps(params) if isinstance(ml.extra_params, str) else params
        # Label Studio 1.23 re-validates the backend on PATCH: it needs url and project in the body
        client.ml.update(id=ml.id, url=ml.url, project=project_id, extra_params=stored)
    unlabelled = _count(client, project_id, *TO_RANK)
    previous = client.projects.get(id=project_id).model_version or ""
    if unlabelled:  # the backend sets the version again when its refresh has begun: that is what we wait for
        client.projects.update(id=project_id, sampling=SAMPLING, model_version="")
    else:  # nothing to predict, so no version would come: the stream keeps the one it has
        client.projects.update(id=project_id, sampling=SAMPLING)
    client.ml.train(id=ml.id)

    progress = progress or Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                    TimeElapsedColumn(), transient=True)
    deadline = time.monotonic() + timeout
    version, current, seen, changed_at = previous, 0, -1, time.monotonic()
    with progress:
        bar = progress.add_task(WRITING, total=unlabelled)
        while unlabelled:
            version = client.projects.get(id=project_id).model_version or ""
            writing = version.startswith("labelloop-")
            current = _count(client, project_id, *TO_RANK, has_model_version(version)) if writing else 0
            progress.update(bar, completed=current, description=WRITING if writing else WAITING)
            now = time.monotonic()
            if current != seen:
                seen, changed_at = current, now
            # the refresh writes as soon as every prediction is made: a quiet spell means it is done
            if writing and (current >= unlabelled or now - changed_at >= settle):
                break
            if now > deadline:
                if not version and previous:  # nothing was written: the stream gets its old predictions back
                    _restore_version(client, project_id, previous)
                raise RankError(
                    f"the backend did not refresh project {project_id} within {timeout:.0f} s "
                    f"({current}/{unlabelled} tasks current, model version {version!r}). Check the "
                    "backend log: it needs LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY to write predictions. "
                    "An LLM project needs its endpoint to answer, and drafts every task without a draft "
                    "before it writes: run `labelloop prelabel` first, or give --timeout more time.")
            time.sleep(1.0)
    missing, missing_ids = 0, []
    if current < unlabelled:  # not predicted, or annotated since we counted: ask which (one page says both)
        pending = client.tasks.list(project=project_id, query=query(*TO_RANK, lacks_model_version(version)),
                                    page_size=5, fields="task_only")
        missing, missing_ids = pending.response.total or 0, [task.id for task in pending.items or ()]
    view_id = save_view(client, project_id, VIEW_TITLE, list(TO_RANK), ["tasks:predictions_score"],
                        columns=("id", "predictions_results", "predictions_score"))
    return RankReport(project_id, version, unlabelled, current, view_id, params.get("strategy") or "backend default",
                      missing, missing_ids)
