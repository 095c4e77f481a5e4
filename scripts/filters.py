"""Data Manager filters, as Label Studio 1.23 expects them, and saved views built from them.

Label Studio is picky here: date values accept one format only, and a model-version filter
iterates over its value, so a plain string matches almost every task.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

_LS_DATETIME = "%Y-%m-%dT%H:%M:%S.%fZ"  # the only format Data Manager date filters accept
# pull a little before a cursor, so that clock skew and same-millisecond writes are not missed
CURSOR_OVERLAP = timedelta(seconds=5)

UNLABELLED = {"filter": "filter:tasks:total_annotations", "operator": "equal", "type": "Number", "value": 0}


def count_above_zero(counter: str) -> dict:
    """Tasks whose ``counter`` (total_annotations, cancelled_annotations...) is positive."""
    return {"filter": f"filter:tasks:{counter}", "operator": "greater", "type": "Number", "value": 0}


def updated_after(when: datetime) -> dict:
    value = when.astimezone(timezone.utc).strftime(_LS_DATETIME)
    return {"filter": "filter:tasks:updated_at", "operator": "greater", "type": "Datetime", "value": value}


def has_model_version(version: str) -> dict:
    """Tasks with a prediction whose model version contains ``version``."""
    return {"filter": "filter:tasks:predictions_model_versions", "operator": "contains", "type": "List",
            "value": [version]}  # a list: Label Studio iterates over the value


def lacks_model_version(version: str) -> dict:
    """Tasks with no prediction whose model version contains ``version``."""
    return {"filter": "filter:tasks:predictions_model_versions", "operator": "not_contains", "type": "List",
            "value": [version]}


def filters(*items: dict, conjunction: str = "and") -> dict:
    """The ``filters`` object of a view or an action: all ``items`` must hold (or any, with "or")."""
    return {"conjunction": conjunction, "items": list(items)}


def query(*items: dict, conjunction: str = "and") -> str:
    """The ``query`` parameter of ``tasks.list`` for ``items``."""
    return json.dumps({"filters": filters(*items, conjunction=conjunction)})


def selected(task_ids) -> str:
    """The ``query`` parameter of ``tasks.list`` for exactly these tasks."""
    return json.dumps({"selectedItems": {"all": False, "included": [int(t) for t in task_ids]}})


#: the Data Manager's task columns in Label Studio 1.23 (`data_manager/functions.py`); task data
#: fields are columns too (``tasks:data.<key>``)
TASK_COLUMNS = ("id", "inner_id", "completed_at", "total_annotations", "cancelled_annotations",
                "total_predictions", "annotators", "annotations_results", "annotations_ids", "predictions_score",
                "predictions_model_versions", "predictions_results", "file_upload", "storage_filename",
                "created_at", "updated_at", "updated_by", "avg_lead_time", "draft_exists")


#: wide enough that a result's JSON shows its label within the table's three lines
_RESULTS_WIDTH = 300


def column_layout(shown: tuple[str, ...]) -> dict:
    """A view's ``hiddenColumns`` and ``columnsWidth``: every task column but ``shown`` (names
    from `TASK_COLUMNS`) hidden, and result columns wide enough to read.

    Task data columns stay visible. Label Studio computes columns such as annotation results
    only for a view that says what it hides: without this, a view made through the API shows
    all 19 columns, those empty, and the text far off to the right.
    """
    unknown = set(shown) - set(TASK_COLUMNS)
    if unknown:
        raise ValueError(f"not Data Manager task columns: {sorted(unknown)}")
    hidden = [f"tasks:{column}" for column in TASK_COLUMNS if column not in shown]
    widths = {f"tasks:{column}": _RESULTS_WIDTH for column in shown if column.endswith("_results")}
    return {"hiddenColumns": {"explore": hidden, "labeling": hidden}, "columnsWidth": widths}


def save_view(client, project_id: int, title: str, items: list[dict], ordering: list[str], *,
              numeric: tuple[str, ...] = (), columns: tuple[str, ...] = ("id",)) -> int:
    """Create the saved view ``title``, or update the one that exists; returns its id.
    ``numeric``: columns (``tasks:data.<key>``) to sort as numbers, not as text. ``columns``: the
    task columns the view shows (`TASK_COLUMNS`) beside the task data."""
    data = {"title": title, "filters": filters(*items), "ordering": ordering, **column_layout(columns)}
    if numeric:  # else PostgreSQL sorts a data key's values as text: "10" before "9"
        data["columnsDisplayType"] = {column: "Number" for column in numeric}
    for view in client.views.list(project=project_id):
        if (view.data or {}).get("title") == title:
            client.views.update(id=view.id, data=data, project=project_id)
            return view.id
    return client.views.create(project=project_id, data=data).id
