"""From a project's tasks to export examples, whatever the kind: the audit's say, and what is left out.

The tasks are Label Studio's task JSON; what one task becomes is the project kind's business
(``example_of``), since reading its regions is Label Studio's format (`labelloop.kinds`).
"""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from typing import Callable

from ..augment import synthetic_source
from .formats import Example


def examples_from_tasks(tasks: dict, example_of: Callable[[dict, object], tuple], *, audit: dict | None = None,
                        exclude_flagged: bool = False) -> tuple[list[Example], dict, list[str]]:
    """Examples in task-id order, ``{reason: [task ids]}`` left out, and messages.

    ``example_of(task, audit_label)`` returns ``(example, None)``, ``(None, reason)`` or
    ``(None, None)`` (nothing to export). ``audit``: ``{"created_at", "consensus": {task id:
    label}, "flagged": {task ids}}`` of the last audit. Its verdict on a task counts only when
    the audit ran after the task's last annotation; ``exclude_flagged`` then leaves the task out.
    """
    skipped, messages = {}, []
    audit_time = audit.get("created_at") if audit else None
    if exclude_flagged and audit is None:
        messages.append("--exclude-flagged: no audit of this project found, nothing excluded")
    examples = []
    for task_id, task in sorted(tasks.items()):
        fresh = audit_time is not None and not changed_since(task, audit_time)
        if exclude_flagged and fresh and task_id in audit["flagged"]:
            example, reason = None, "unresolved audit finding"
        else:
            example, reason = example_of(task, audit["consensus"].get(task_id) if fresh else None)
        if reason:
            skipped.setdefault(reason, []).append(task_id)
        elif example is not None:
            examples.append(_with_source(example, task))
    return examples, skipped, messages


def _with_source(example: Example, task: dict) -> Example:
    """A variant `labelloop augment` made names its source task in ``data.synthetic_of``."""
    source = synthetic_source(task.get("data"))
    return example if source is None else replace(example, synthetic_of=source)


def _last_annotated(task: dict) -> str:
    # a skip (a cancelled annotation) decides nothing: the audit's verdict on the labels stands
    return max((str(a.get("updated_at") or a.get("created_at") or "") for a in task.get("annotations") or ()
                if isinstance(a, dict) and not a.get("was_cancelled")), default="")


def changed_since(task: dict, when: str) -> bool:
    """Whether one of the task's annotations, skips aside, was added or updated after ``when``
    (ISO 8601, as Label Studio writes its times); False where a time does not parse."""
    try:
        return _utc(_last_annotated(task)) > _utc(when)
    except ValueError:
        return False


def _utc(value: str) -> datetime:
    """An ISO 8601 time; one without a zone is UTC, as Label Studio stores its times."""
    moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)
