"""`export_snapshot` on a local snapshot (no Label Studio): bad input, atomic output."""
import json

import pytest

from labelloop.label_config import load
from labelloop.model.errors import LabelloopError, NotEnoughLabelsError
from labelloop.scripts.export import ExportOptions, export_snapshot
from labelloop.scripts.sync import ProjectSnapshot


def snapshot_with(tmp_path, pairs, template="llm_fine_tuning"):
    snapshot = ProjectSnapshot(tmp_path / "snapshots", 7)
    snapshot.dir.mkdir(parents=True)
    with open(snapshot.tasks_path, "w", encoding="utf-8") as f:
        for i, (prompt, response) in enumerate(pairs, start=1):
            annotations = [] if response is None else [{
                "id": i, "completed_by": 1, "updated_at": "2026-01-01T00:00:00Z",
                "result": [{"from_name": "response", "to_name": "prompt", "type": "textarea",
                            "value": {"text": [response]}}]}]
            f.write(json.dumps({"id": i, "data": {"prompt": prompt}, "annotations": annotations}) + "\n")
    snapshot.state_path.write_text(json.dumps({"project_id": 7, "label_config": load(template)}))
    return snapshot


PAIRS = [(f"Question number {n}: what is {n} times three?", f"{n} times three is {3 * n}.") for n in range(20)]


def test_an_example_over_the_token_limit_is_left_out_and_reported(tmp_path):
    huge = ("Tell me everything. " + "word " * 400, "Fine.")
    snapshot = snapshot_with(tmp_path, PAIRS + [huge])
    result = export_snapshot(snapshot, tmp_path / "out", ExportOptions("openai-chat", max_tokens=200,
                                                                       near_duplicate_threshold=0.999))
    assert result.manifest["dropped"] == {"over 200 tokens": [21]}
    assert sum(c["examples"] for c in result.manifest["counts"].values()) == 20
    assert result.manifest["tokens"]["train"]["max"] <= 200


def test_failed_exports_leave_nothing_behind(tmp_path):
    snapshot = snapshot_with(tmp_path, PAIRS[:8])  # 6 training examples: under OpenAI's floor of 10
    with pytest.raises(LabelloopError, match="at least 10 are required"):
        export_snapshot(snapshot, tmp_path / "out", ExportOptions("openai-chat"))
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["snapshots"]
    with pytest.raises(LabelloopError, match="unknown format 'csv'"):
        export_snapshot(snapshot, tmp_path / "out", ExportOptions("csv"))
    empty = snapshot_with(tmp_path / "empty", [("unanswered", None)])
    with pytest.raises(NotEnoughLabelsError, match="no finished annotations"):
        export_snapshot(empty, tmp_path / "out", ExportOptions("openai-chat"))


def test_non_utf8_and_huge_text_do_not_crash(tmp_path):
    garbled = ("\ufffd\ufffd\ufffd\ufffd?", "x")          # bytes that were not UTF-8, decoded with replacement
    snapshot = snapshot_with(tmp_path, PAIRS + [garbled, ("Q " * 200_000, "A long one.")])
    result = export_snapshot(snapshot, tmp_path / "out", ExportOptions("alpaca"))
    assert result.manifest["dropped"]["prompt/text no letters or digits"] == [21]
    assert result.manifest["dropped"]["over 16385 tokens"] == [22]


def test_a_giant_near_duplicate_group_is_reported(tmp_path):
    same = [("Rate this product review please.", f"Rating {n}.") for n in range(30)]
    snapshot = snapshot_with(tmp_path, same + PAIRS)
    result = export_snapshot(snapshot, tmp_path / "out", ExportOptions("openai-chat"))
    assert result.manifest["near_duplicates"]["largest_group"] == 30
    assert any("30 examples form one near-duplicate group" in m for m in result.messages)
    splits = {e["task_id"]: name for name, entries in result.manifest["examples"].items() for e in entries}
    assert len({splits[t] for t in range(1, 31)}) == 1


def test_threshold_zero_groups_repeated_prompts_without_embedding(tmp_path, monkeypatch):
    import labelloop.model.embeddings as embeddings

    monkeypatch.setattr(embeddings, "get_embedder", lambda *a, **k: pytest.fail("embedded"))
    repeated = [(PAIRS[0][0], "A second answer."), (PAIRS[1][0] + " ", "A third answer.")]
    snapshot = snapshot_with(tmp_path, PAIRS + repeated)
    result = export_snapshot(snapshot, tmp_path / "out", ExportOptions("openai-chat", near_duplicate_threshold=0))
    assert result.manifest["near_duplicates"]["pairs"] == 2 and "embed" not in result.seconds
    splits = {e["task_id"]: name for name, entries in result.manifest["examples"].items() for e in entries}
    assert splits[1] == splits[21] and splits[2] == splits[22]
