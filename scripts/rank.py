"""`labelloop rank`: make Label Studio serve the most informative task next.

1. The project's sampling becomes "Uncertainty sampling": the label stream serves tasks with a
   prediction of the project's model version, lowest score first (least-solved cluster first
   when the backend writes clusters: ``LABELLOOP_DIVERSITY_CLUSTERS``).
2. The backend is asked to refresh (``START_TRAINING`` through ``ml.train``): it retrains when
   there are labels, re-predicts every unlabelled task with a score (and a cluster, if
   on), and moves the project's model version. We wait until every unlabelled task has a current
   prediction, but for `labelloop augment`'s variants, which the refresh leaves alone.
3. A saved Data Manager view, "Most informative first", lists those unlabelled tasks by score.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from labelloop.model.errors import LabelloopError
from labelloop.model.ranking import STRATEGIES, UnknownStrategyError

from .augment import MODEL_VERSION as AUGMENT_VERSION
from .filters import UNLABELLED, has_model_version, lacks_model_version, query, save_view

VIEW_TITLE = "Most informative first"
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


def _count(client, project_id: int, *items: dict) -> int:
    return client.tasks.list(project=project_id, query=query(*items), page_size=1).response.total or 0


def rank_project(client, project_id: int, *, strategy: str | None = None, timeout: float = 600.0,
                 progress: Progress | None = None) -> RankReport:
    if strategy is not None and strategy not in STRATEGIES:
        raise UnknownStrategyError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    backends = list(client.ml.list(project=project_id))
    if not backends:
        raise RankError(f"project {project_id} has no ML backend: connect labelloop first "
                        "(Project > Settings > Model, or `labelloop demo`)")
    ml = backends[0]
    if strategy is not None:
        params = {**(ml.extra_params if isinstance(ml.extra_params, dict) else {}), "strategy": strategy}
        # Label Studio 1.23 re-validates the backend on PATCH: it needs url and project in the body
        client.ml.update(id=ml.id, url=ml.url, project=project_id, extra_params=params)
    # the backend sets the version again when its refresh is complete: that is what we wait for
    client.projects.update(id=project_id, sampling=SAMPLING, model_version="")
    client.ml.train(id=ml.id)

    unlabelled = _count(client, project_id, *TO_RANK)
    progress = progress or Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                    TimeElapsedColumn(), transient=True)
    deadline = time.monotonic() + timeout
    with progress:
        bar = progress.add_task("unlabelled tasks with a current prediction", total=unlabelled)
        while True:
            version = client.projects.get(id=project_id).model_version or ""
            current = (_count(client, project_id, *TO_RANK, has_model_version(version))
                       if version.startswith("labelloop-") else 0)
            progress.update(bar, completed=current)
            if version.startswith("labelloop-") and current >= unlabelled:
                break
            if time.monotonic() > deadline:
                raise RankError(
                    f"the backend did not refresh project {project_id} within {timeout:.0f} s "
                    f"({current}/{unlabelled} tasks current, model version {version!r}). Check the "
                    "backend log; it needs LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY to write predictions.")
            time.sleep(1.0)
    view_id = save_view(client, project_id, VIEW_TITLE, list(TO_RANK), ["tasks:predictions_score"])
    ml = client.ml.get(id=ml.id)
    chosen = (ml.extra_params or {}).get("strategy") if isinstance(ml.extra_params, dict) else None
    return RankReport(project_id, version, unlabelled, current, view_id, chosen or "backend default")
