"""Pull a project's labels through the SDK: the latest usable annotation per task.

A local snapshot (JSON, written atomically) makes later pulls incremental: only tasks whose
``updated_at`` moved since the last pull are fetched. Label Studio bumps a task's ``updated_at``
when an annotation is created or changed. Deletions do not show up that way, so every pull
also reconciles with an id-only listing of the annotated tasks (`labelloop.scripts.sync.task_index`):
deleted tasks leave the training set, and tasks whose annotation counts changed are fetched again.
"""
from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

from labelloop.label_config.spec import ClassificationSpec, chosen_labels
from labelloop.model.store import atomic_write_text
from labelloop.model.text_cleaning import clean_text

from .client import as_dict
from .filters import CURSOR_OVERLAP, count_above_zero, query, updated_after
from .sync import annotation_counts

logger = logging.getLogger(__name__)



@dataclass(frozen=True)
class LabelledTask:
    task_id: int
    text: str
    labels: tuple[str, ...]
    annotation_id: int
    updated_at: str
    counts: tuple[int, int] = (0, 0)  # (annotations, cancelled) when pulled, to notice deletions


def latest_annotation(annotations: Iterable) -> dict | None:
    """The most recently updated annotation that was neither cancelled (skipped) nor empty."""
    usable = [a for a in map(as_dict, annotations or ())
              if not a.get("was_cancelled") and a.get("result")]
    if not usable:
        return None
    return max(usable, key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""), a.get("id", 0)))


def _known_and_unknown(annotation: dict, spec: ClassificationSpec) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The labels an annotation chose, split into those in the label config and those not."""
    chosen = chosen_labels(annotation.get("result"), spec)
    return (tuple(label for label in chosen if label in spec.labels),
            tuple(label for label in chosen if label not in spec.labels))


def labelled_task(task, spec: ClassificationSpec) -> LabelledTask | None:
    """The task's label(s) from its latest usable annotation, or None.

    Labels that are not in the label config are dropped with a log line; an annotation left
    with no known label is ignored. Single-label projects take the first chosen label.
    """
    task = as_dict(task)
    annotation = latest_annotation(task.get("annotations"))
    if annotation is None:
        return None
    text = (task.get("data") or {}).get(spec.value_key)
    if not isinstance(text, str) or not text.strip():
        logger.warning("task %s: annotated, but its %r field holds no text; not used for training",
                       task.get("id"), spec.value_key)
        return None
    labels, unknown = _known_and_unknown(annotation, spec)
    if unknown:
        logger.warning("task %s annotation %s: labels %s are not in the label config %s; ignored",
                       task.get("id"), annotation.get("id"), list(unknown), list(spec.labels))
    if not labels:
        return None
    if not spec.multi_label:
        labels = labels[:1]
    return LabelledTask(int(task["id"]), clean_text(text), labels, int(annotation.get("id", 0)),
                        str(annotation.get("updated_at") or ""), annotation_counts(task))


def annotator_labels(task: dict, spec, unknown: set | None = None) -> dict:
    """Latest usable label per annotator of one task: ``{annotator id: label}``, where the label
    is a string, or a sorted tuple of labels for multi-label configs.

    Labels that are not in the config are left out and added to ``unknown``.
    """
    by_annotator = defaultdict(list)
    for annotation in task.get("annotations") or ():
        by_annotator[annotation.get("completed_by")].append(annotation)
    out = {}
    for annotator, own in by_annotator.items():
        latest = latest_annotation(own)
        if latest is None:
            continue
        labels, unknown_here = _known_and_unknown(latest, spec)
        if unknown is not None:
            unknown.update(unknown_here)
        if labels:
            out[annotator] = tuple(sorted(labels)) if spec.multi_label else labels[0]
    return out


class LabelSnapshot:
    """Latest labels per task of one project, kept in a JSON file and updated incrementally."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.cursor: datetime | None = None
        self.tasks: dict[int, LabelledTask] = {}
        if self.path.exists():
            try:
                raw = json.loads(self.path.read_text(encoding="utf-8"))
                self.cursor = datetime.fromisoformat(raw["cursor"]) if raw.get("cursor") else None
                self.tasks = {int(k): LabelledTask(**{**v, "labels": tuple(v["labels"]),
                                                      "counts": tuple(v.get("counts") or (0, 0))})
                              for k, v in raw.get("tasks", {}).items()}
            except (ValueError, KeyError, TypeError) as exc:
                logger.warning("label snapshot %s is unreadable (%s); pulling everything again", self.path, exc)
                self.cursor, self.tasks = None, {}

    def pull(self, client, project_id: int, spec: ClassificationSpec, *, full: bool = False,
             page_size: int = 1000) -> int:
        """Fetch new and changed tasks (all annotated tasks when ``full``), drop deleted ones;
        returns how many tasks were fetched."""
        from .sync import fetch_tasks, task_index

        started = datetime.now(timezone.utc)
        incremental = not full and self.cursor is not None
        since = [updated_after(self.cursor - CURSOR_OVERLAP)] if incremental else []
        if not incremental:
            self.tasks = {}
        fetched = 0

        def take(task) -> None:
            item = labelled_task(task, spec)
            task_id = int(as_dict(task)["id"])
            if item is None:
                self.tasks.pop(task_id, None)  # skipped, cancelled or emptied since the last pull
            else:
                self.tasks[task_id] = item

        # a task whose only annotation became "skipped" counts as cancelled, not annotated;
        # the SDK's only_annotated flag does not filter, hence the counters
        for counter in ("total_annotations", "cancelled_annotations"):
            for task in client.tasks.list(project=project_id, fields="all", page_size=page_size,
                                          query=query(count_above_zero(counter), *since)):
                fetched += 1
                take(task)
        if incremental:
            annotated = query(count_above_zero("total_annotations"), count_above_zero("cancelled_annotations"),
                              conjunction="or")
            index = task_index(client, project_id, task_query=annotated, page_size=page_size)
            for task_id in set(self.tasks) - set(index):
                del self.tasks[task_id]  # the task, or all its annotations, were deleted
            stale = [t for t, item in self.tasks.items() if item.counts != index[t]]
            for task in fetch_tasks(client, project_id, stale) if stale else ():
                fetched += 1
                take(task)
        self.cursor = started
        return fetched

    def save(self) -> None:
        atomic_write_text(self.path, json.dumps({
            "cursor": self.cursor.isoformat() if self.cursor else None,
            "tasks": {str(k): asdict(v) for k, v in self.tasks.items()},
        }))
