"""`labelloop sync`: a local snapshot of a project's tasks, annotations and predictions.

One JSONL file per project (one task per line, as the API returns it with ``fields=all``) and a
small state file. Pulls are incremental by ``updated_at`` and idempotent; the snapshot is
replaced atomically only after a complete pull, so an interrupted sync leaves the previous
snapshot intact and the next run simply pulls again. Nothing in Label Studio is modified.

Deletions leave no ``updated_at`` behind, so every pull also checks the snapshot's annotation
and task counts against the project's counters (one cheap request). Only when they differ does
it reconcile with `task_index`, an id-only listing with each task's annotation counts (about
2 s per 5,000 tasks on Label Studio 1.23): tasks Label Studio no longer has leave the snapshot,
and tasks whose counts changed (an annotation deleted) are fetched again. A deletion that a
concurrent, not yet pulled annotation hides from the counters is caught by the next pull.
The backend's training runs keep a snapshot of the annotated tasks the same way
(``annotated_only``).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from labelloop.model.store import atomic_write_text

from .client import LabelStudioUnavailable, as_dict, error_text
from .filters import CURSOR_OVERLAP, count_above_zero, query, selected, updated_after

INDEX_FIELDS = "id,total_annotations,cancelled_annotations"


def with_retries(call: Callable, *, attempts: int = 4, base_delay: float = 1.0, what: str = "Label Studio"):
    """Run ``call()``; on connection errors and 5xx answers retry with exponential backoff."""
    import httpx
    from label_studio_sdk.core.api_error import ApiError

    for attempt in range(attempts):
        try:
            return call()
        except (httpx.TransportError, ApiError) as exc:
            status = getattr(exc, "status_code", None)
            if isinstance(exc, ApiError) and (status is None or status < 500):
                raise
            if attempt == attempts - 1:
                raise LabelStudioUnavailable(f"{what} failed after {attempts} attempts: {error_text(exc)}") from exc
            time.sleep(base_delay * 2 ** attempt)


def annotation_counts(task: dict) -> tuple[int, int]:
    """``(annotations, cancelled annotations)`` as Label Studio counts them on a task."""
    return int(task.get("total_annotations") or 0), int(task.get("cancelled_annotations") or 0)


def task_index(client, project_id: int, *, task_query: str | None = None,
               page_size: int = 1000) -> dict[int, tuple[int, int]]:
    """``{task id: annotation_counts}`` for the project's tasks (those matching ``task_query``),
    through a listing that carries nothing else."""
    out = {}
    for task in client.tasks.list(project=project_id, include=INDEX_FIELDS, query=task_query, page_size=page_size):
        task = as_dict(task)
        out[int(task["id"])] = annotation_counts(task)
    return out


def fetch_tasks(client, project_id: int, task_ids, *, chunk: int = 500) -> list[dict]:
    """The full task JSON (``fields=all``) of ``task_ids``."""
    ids = sorted(task_ids)
    out = []
    for start in range(0, len(ids), chunk):
        part = ids[start:start + chunk]
        out += [as_dict(t) for t in client.tasks.list(project=project_id, fields="all", query=selected(part),
                                                     page_size=len(part))]
    return out


@dataclass
class SyncReport:
    project_id: int
    fetched: int
    total: int
    path: Path
    removed: int = 0


class ProjectSnapshot:
    """``<root>/project-<id>/tasks.jsonl`` and ``state.json``.

    With ``annotated_only``, only tasks that have an annotation (finished or skipped) are kept,
    without their predictions: what a training run needs, and no more.
    """

    def __init__(self, root: str | Path, project_id: int, *, annotated_only: bool = False):
        self.dir = Path(root) / f"project-{project_id}"
        self.project_id = project_id
        self.annotated_only = annotated_only
        self._cache: tuple[int, dict] | None = None  # (file mtime, tasks): parse each version once

    @classmethod
    def in_data_dir(cls, data_dir: str | Path, project_id: int) -> "ProjectSnapshot":
        """The snapshot that audit, export and augment share under a data directory
        (``<data_dir>/snapshots/project-<id>``)."""
        return cls(Path(data_dir) / "snapshots", project_id)

    def _scopes(self) -> list[list[dict]]:
        """Filters whose union is the snapshot's scope (Label Studio's filters have one conjunction)."""
        if not self.annotated_only:
            return [[]]
        return [[count_above_zero("total_annotations")], [count_above_zero("cancelled_annotations")]]

    def _counts_match(self, tasks: dict, project) -> bool:
        """Whether the snapshot holds as many annotations, skipped annotations and (unless
        ``annotated_only``) tasks as Label Studio's project counters say."""
        counts = [annotation_counts(t) for t in tasks.values()]
        ours = (sum(c[0] for c in counts), sum(c[1] for c in counts), len(tasks))
        theirs = tuple(getattr(project, name, None) for name in
                       ("total_annotations_number", "skipped_annotations_number", "task_number"))
        if self.annotated_only:
            ours, theirs = ours[:2], theirs[:2]
        return None not in theirs and ours == tuple(int(x) for x in theirs)

    def _index_query(self) -> str | None:
        if not self.annotated_only:
            return None
        return query(count_above_zero("total_annotations"), count_above_zero("cancelled_annotations"),
                     conjunction="or")

    @property
    def tasks_path(self) -> Path:
        return self.dir / "tasks.jsonl"

    @property
    def state_path(self) -> Path:
        return self.dir / "state.json"

    def state(self) -> dict:
        try:
            return json.loads(self.state_path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return {}

    def tasks(self) -> dict[int, dict]:
        """``{task id: task JSON}``; a shared dict, parsed once per version of the file."""
        try:
            mtime = self.tasks_path.stat().st_mtime_ns
        except FileNotFoundError:
            return {}
        if self._cache is None or self._cache[0] != mtime:
            with open(self.tasks_path, encoding="utf-8") as f:
                self._cache = (mtime, {t["id"]: t for t in map(json.loads, f) if t})
        return self._cache[1]

    def sync(self, client, *, full: bool = False, page_size: int = 500,
             progress: Callable[[int], None] | None = None) -> SyncReport:
        """Pull new and changed tasks (everything when ``full`` or on the first run)."""
        started = datetime.now(timezone.utc)
        state = self.state()
        project = with_retries(lambda: client.projects.get(id=self.project_id))
        cursor = None if full or not state.get("cursor") else datetime.fromisoformat(state["cursor"])
        tasks = {} if cursor is None else dict(self.tasks())
        since = [] if cursor is None else [updated_after(cursor - CURSOR_OVERLAP)]

        def pull() -> list[dict]:
            out = []
            for scope in self._scopes():
                items = scope + since
                for task in client.tasks.list(project=self.project_id, fields="all", page_size=page_size,
                                              query=query(*items) if items else None):
                    task = as_dict(task)
                    if self.annotated_only:
                        task.pop("predictions", None)
                    out.append(task)
                    if progress is not None:
                        progress(1)
            return out

        changed = with_retries(pull)  # a failed page restarts the pull; the snapshot is untouched
        for task in changed:
            tasks[task["id"]] = task
        gone: set = set()
        # after the pull, so that anything that changed meanwhile shows up as a count mismatch
        if cursor is not None and not self._counts_match(tasks, with_retries(
                lambda: client.projects.get(id=self.project_id))):
            index = with_retries(lambda: task_index(client, self.project_id, task_query=self._index_query()))
            gone = set(tasks) - set(index)
            for task_id in gone:
                del tasks[task_id]
            stale = {t for t, counts in index.items() if t not in tasks or annotation_counts(tasks[t]) != counts}
            if stale:
                refetched = with_retries(lambda: fetch_tasks(client, self.project_id, stale))
                for task in refetched:
                    if self.annotated_only:
                        task.pop("predictions", None)
                    tasks[task["id"]] = task
                changed += refetched
        fetched = len(changed)
        self.dir.mkdir(parents=True, exist_ok=True)
        if changed or gone or not self.tasks_path.exists():
            # ASCII escapes: a lone surrogate in a task must not make the snapshot unwritable
            atomic_write_text(self.tasks_path, "".join(json.dumps(t) + "\n" for _, t in sorted(tasks.items())))
            self._cache = (self.tasks_path.stat().st_mtime_ns, dict(sorted(tasks.items())))
        atomic_write_text(self.state_path, json.dumps({
            "project_id": self.project_id, "title": project.title, "label_config": project.label_config,
            "cursor": started.isoformat(), "n_tasks": len(tasks)}, indent=2))
        return SyncReport(self.project_id, fetched, len(tasks), self.tasks_path, removed=len(gone))
