"""Saved views' column layout (the Data Manager reads it; `tests/test_integration_audit.py` checks
that Label Studio then fills the shown columns)."""
import pytest

from labelloop.scripts.filters import TASK_COLUMNS, column_layout


def test_a_view_hides_every_task_column_it_does_not_show_and_widens_results():
    layout = column_layout(("id", "annotations_results", "predictions_results"))
    hidden = layout["hiddenColumns"]
    assert hidden["explore"] == hidden["labeling"]  # Label Studio computes a column unless both hide it
    assert {"tasks:id", "tasks:annotations_results", "tasks:predictions_results"}.isdisjoint(hidden["explore"])
    assert {f"tasks:{c}" for c in TASK_COLUMNS} - set(hidden["explore"]) == {
        "tasks:id", "tasks:annotations_results", "tasks:predictions_results"}
    assert set(layout["columnsWidth"]) == {"tasks:annotations_results", "tasks:predictions_results"}


def test_an_unknown_column_is_refused():
    with pytest.raises(ValueError, match="predictions_result"):
        column_layout(("id", "predictions_result"))
