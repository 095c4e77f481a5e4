"""Exports keep what annotators wrote, catch simple variants across splits, survive any text,
and --overwrite touches only labelloop's own files. Local snapshots, no Label Studio."""
import json

import numpy as np
import pytest

from labelloop.label_config import load
from labelloop.model.data_issues import cross_split_neighbours, minhash_pairs
from labelloop.model.errors import LabelloopError
from labelloop.model.export.formats import Example
from labelloop.model.export.pipeline import prepare
from labelloop.model.text_cleaning import clean_text, dedup_key, verbatim
from labelloop.scripts.export import ExportOptions, export_snapshot
from labelloop.scripts.sync import ProjectSnapshot

from test_export_snapshot import PAIRS, snapshot_with

PYTHON = '''def dfs(graph, node, visited=None):
    if visited is None:
        visited = set()
    visited.add(node)
    for nxt in graph[node]:
        if nxt not in visited:
            dfs(graph, nxt, visited)
    return visited'''
YAML = "server:\n  host: 0.0.0.0\n  ports:\n    - 80\n    - 443\n"
TABLE = "| name | qty |\n|------|-----|\n| pear |   2 |\n\n- one\n  - nested\n- two"
PROSE = "Two  spaces after a full stop.  Like  this.\tAnd a tab."


def chat_contents(out, split="train"):
    rows = [json.loads(line) for line in (out / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()]
    return {r["messages"][0]["content"]: r["messages"][1]["content"] for r in rows}


def all_chats(out):
    found = {}
    for split in ("train", "validation", "test"):
        if (out / f"{split}.jsonl").exists():
            found.update(chat_contents(out, split))
    return found


def test_responses_and_prompts_are_exported_verbatim(tmp_path):
    answers = {"Write a depth-first search in Python.": PYTHON,
               "Give me a YAML server config.\r\nWith two ports.": YAML + "\r\n",
               "A  table  and a nested list, please.": "  " + TABLE.replace("\n", "\r\n") + "\n\n",
               "Say it\twith tabs.": PROSE}
    snapshot = snapshot_with(tmp_path, PAIRS + list(answers.items()))
    export_snapshot(snapshot, tmp_path / "out", ExportOptions("openai-chat", fractions="1.0"))
    chats = all_chats(tmp_path / "out")
    assert chats["Write a depth-first search in Python."] == PYTHON
    assert chats["Give me a YAML server config.\nWith two ports."] == YAML + "\n"
    assert chats["A  table  and a nested list, please."] == "  " + TABLE + "\n\n"  # only \r\n -> \n
    assert chats["Say it\twith tabs."] == PROSE
    assert "    if visited is None:" in (tmp_path / "out" / "train.jsonl").read_text().replace("\\n", "\n")


def test_case_punctuation_and_whitespace_variants_share_a_split(tmp_path):
    variants = [("I forgot my password.", "Use the reset link."),
                ("I FORGOT MY PASSWORD. ?", "Click 'Forgot password'."),
                ("i   forgot my ｐａｓｓｗｏｒｄ", "We can reset it for you."),  # full-width letters: NFKC
                ("How do I change the billing address on my account today?", "Open Billing."),
                ("How do I change the billing address on my account now?", "Go to Billing.")]
    snapshot = snapshot_with(tmp_path, PAIRS + variants)
    result = export_snapshot(snapshot, tmp_path / "out", ExportOptions("openai-chat"))
    where = {e["task_id"]: name for name, rows in result.manifest["examples"].items() for e in rows}
    assert where[21] == where[22] == where[23]
    assert where[24] == where[25]
    by = result.manifest["near_duplicates"]["pairs_by_detector"]
    assert by["normalised_text"] >= 2 and by["minhash"] >= 1 and by["embedding"] is not None
    assert result.manifest["near_duplicates"]["cross_split_pairs"] == 0


def test_variant_keys_and_minhash():
    assert dedup_key("I forgot my password.") == dedup_key("I FORGOT MY PASSWORD. ?") == "i forgot my password"
    assert dedup_key("ｆｏｏ\u00a0 bar!") == "foo bar"
    keys = [dedup_key(t) for t in ["the quick brown fox jumps over the lazy dog today",
                                   "the quick brown fox jumps over the lazy dog now",
                                   "completely different words in this one sentence here"]]
    assert minhash_pairs(keys, threshold=0.7).tolist() == [[0, 1]]


def two_tight_clusters(rng, size=11, cos=0.96):
    """Two clusters of ``size`` near-identical unit vectors whose members are ``cos`` apart across
    clusters: every item's 10 nearest neighbours are in its own cluster."""
    a = rng.normal(size=64)
    a /= np.linalg.norm(a)
    b = rng.normal(size=64)
    b -= b @ a * a
    b /= np.linalg.norm(b)
    b = cos * a + np.sqrt(1 - cos ** 2) * b
    jitter = lambda v: v + rng.normal(scale=0.002, size=(size, 64))  # noqa: E731
    return np.vstack([jitter(a), jitter(b)])


def test_the_leakage_check_does_not_rely_on_ten_nearest_neighbours():
    rng = np.random.default_rng(0)
    clusters = two_tight_clusters(rng)
    other = rng.normal(size=(60, 64))
    vectors = np.vstack([clusters, other])
    words = [f"alpha{i} beta{i} gamma{i}" for i in range(len(vectors))]  # no text detector links them
    examples = [Example(i, text, response="ok") for i, text in enumerate(words)]
    prepared = prepare(examples, embed=lambda texts: vectors, fractions="0.2,0.4,0.4", seed=3)  # k-NN alone splits them
    # the first 22 items are all within 0.95 of each other across the two clusters: one split
    assert len(set(prepared.split[:22].tolist())) == 1
    assert prepared.overlap_after == 0
    assert len(cross_split_neighbours(vectors, prepared.split, threshold=0.95)) == 0


def test_one_bad_example_never_stops_an_export(tmp_path):
    config = load("ner").replace('value="product"', 'value="product name"')
    snapshot = ProjectSnapshot(tmp_path / "snapshots", 8)
    snapshot.dir.mkdir(parents=True)
    rows = []
    for i in range(1, 31):
        label = "product name" if i == 7 else "person"
        text = f"Sentence {i} mentions Alice{i} here."
        start = text.index("Alice")
        rows.append({"id": i, "data": {"text": text}, "annotations": [{
            "id": i, "completed_by": 1, "updated_at": "2026-01-01T00:00:00Z",
            "result": [{"from_name": "label", "to_name": "text", "type": "labels",
                        "value": {"start": start, "end": start + len(f"Alice{i}"), "labels": [label]}}]}]})
    snapshot.tasks_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    snapshot.state_path.write_text(json.dumps({"project_id": 8, "label_config": config}))
    result = export_snapshot(snapshot, tmp_path / "out", ExportOptions("conll"))
    assert result.manifest["dropped"] == {"invalid (invalid_conll_line)": [7]}
    assert sum(c["examples"] for c in result.manifest["counts"].values()) == 29


def test_overwrite_replaces_only_what_labelloop_wrote(tmp_path):
    snapshot = snapshot_with(tmp_path, PAIRS)
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    for overwrite in (False, True):
        with pytest.raises(LabelloopError, match="mine.txt" if overwrite else "--overwrite"):
            export_snapshot(snapshot, out, ExportOptions("openai-chat", overwrite=overwrite))
        assert [p.name for p in out.iterdir()] == ["mine.txt"]
    (out / "mine.txt").unlink()
    export_snapshot(snapshot, out, ExportOptions("openai-chat", plot=True))
    first = sorted(p.name for p in out.iterdir())
    export_snapshot(snapshot, out, ExportOptions("sharegpt", fractions="1.0", overwrite=True))
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "train.jsonl"]
    assert "label_distribution.png" in first
    (out / "notes.md").write_text("mine")
    with pytest.raises(LabelloopError, match="notes.md"):
        export_snapshot(snapshot, out, ExportOptions("openai-chat", overwrite=True))
    assert (out / "notes.md").read_text() == "mine" and (out / "train.jsonl").exists()


NASTY = "caf\udce9 \ud800 nul\x00 bell\x07 esc\x1b c1\x85 ok"


def test_clean_text_keeps_length_and_drops_what_breaks_encoders():
    cleaned = clean_text(NASTY)
    assert len(cleaned) == len(NASTY)
    cleaned.encode("utf-8")  # no lone surrogate left
    assert not any(ch in cleaned for ch in "\x00\x07\x1b\x85")
    assert clean_text("tab\tnew\nline\r\n") == "tab\tnew\nline\r\n"
    assert verbatim("\r\n  keep  inner  \r\n") == "\n  keep  inner  \n"


def test_export_survives_surrogates_nul_and_control_characters(tmp_path):
    snapshot = snapshot_with(tmp_path, PAIRS + [(f"Explain this: {NASTY}", f"It is {NASTY}.")])
    result = export_snapshot(snapshot, tmp_path / "out", ExportOptions("openai-chat", fractions="1.0"))
    text = (tmp_path / "out" / "train.jsonl").read_text(encoding="utf-8")
    assert "\\u0000" not in text and "\\ud800" not in text
    assert sum(c["examples"] for c in result.manifest["counts"].values()) == 21
