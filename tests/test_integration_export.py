"""`labelloop export` end to end against a real Label Studio, for each project type."""
import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from labelloop.model.datasets import chatterbot_conversations, rotten_tomatoes, wnut_entities
from labelloop.model.errors import LabelloopError
from labelloop.model.text_cleaning import verbatim
from labelloop.scripts import projects
from labelloop.scripts.cli import app
from labelloop.scripts.export import ExportOptions, run_export

pytestmark = pytest.mark.integration

BJT_PROMPT = "How does a BJT operate in active mode?"
BJT_RESPONSE = ("In active mode, a BJT operates with the base-emitter junction forward biased and the base-collector "
                "junction reverse biased. By adjusting the small base current, the much larger collector current can "
                "be controlled, allowing the transistor to work as an amplifier.")
BJT_LINE = ('{"messages": [{"role": "user", "content": "How does a BJT operate in active mode?"}, {"role": '
            '"assistant", "content": "In active mode, a BJT operates with the base-emitter junction forward biased '
            'and the base-collector junction reverse biased. By adjusting the small base current, the much larger '
            'collector current can be controlled, allowing the transistor to work as an amplifier."}]}')


def new_tasks(client, project_id, data):
    before = {t.id for t in projects.iter_tasks(client, project_id)}
    projects.import_tasks(client, project_id, data)
    return sorted((t for t in projects.iter_tasks(client, project_id) if t.id not in before), key=lambda t: t.id)


def export(client, project_id, out, fmt, tmp_path, **kwargs):
    return run_export(client, project_id, out, ExportOptions(fmt, **kwargs), data_dir=tmp_path / "data")


def read_split_records(result):
    """{task_id: (split, record)} for every exported line, using the manifest's task ids."""
    out = {}
    fmt = result.manifest["format"]
    for split, entries in result.manifest["examples"].items():
        path = result.out_dir / f"{split}.{'conll' if fmt == 'conll' else 'jsonl'}"
        if not entries:
            continue
        text = path.read_text(encoding="utf-8")
        records = text.split("\n\n") if fmt == "conll" else [json.loads(line) for line in text.splitlines()]
        records = [r for r in records if r != ""]
        assert len(records) == len(entries)
        for entry, record in zip(entries, records):
            out[entry["task_id"]] = (split, record)
    return out


def schema_ok(record, fmt):
    """An independent check of each format's shape (not labelloop's validator)."""
    def chat_ok(messages, last="assistant"):
        roles = [m["role"] for m in messages]
        if roles and roles[0] == "system":
            roles = roles[1:]
        return (all(set(m) == {"role", "content"} and isinstance(m["content"], str) and m["content"].strip()
                    for m in messages)
                and roles == ["user", "assistant"][:len(roles)] and roles[-1] == last)

    if fmt in ("openai-chat", "messages") and "messages" in record:
        return set(record) == {"messages"} and chat_ok(record["messages"])
    if fmt == "messages":
        return set(record) == {"prompt", "chosen", "rejected"} and chat_ok(record["prompt"], "user")
    if fmt == "openai-dpo":
        return (set(record) == {"input", "preferred_output", "non_preferred_output"}
                and chat_ok(record["input"]["messages"], "user")
                and record["preferred_output"][0]["content"] != record["non_preferred_output"][0]["content"])
    if fmt == "alpaca":
        return set(record) <= {"instruction", "input", "output", "system"} and record["instruction"] and record["output"]
    if fmt == "sharegpt":
        froms = [t["from"] for t in record["conversations"]]
        return froms in (["human", "gpt"], ["system", "human", "gpt"]) and all(t["value"] for t in record["conversations"])
    if fmt == "classification-jsonl":
        return set(record) == {"text", "label"} and record["text"] and record["label"]
    if fmt == "conll":
        return all(len(line.split("\t")) == 2 for line in record.strip().splitlines())
    raise AssertionError(fmt)


def check_all_valid(result, fmt):
    runner = CliRunner()
    for path in sorted(result.out_dir.glob("*.jsonl")) + sorted(result.out_dir.glob("*.conll")):
        outcome = runner.invoke(app, ["validate", str(path), "--format", fmt, "--min-examples", "1"])
        assert outcome.exit_code == 0, outcome.output
    records = read_split_records(result)
    assert records and all(schema_ok(record, fmt) for _, record in records.values())
    return records


def assert_groups_within_one_split(records, groups):
    for group in groups:
        present = {records[t][0] for t in group if t in records}
        assert len(present) <= 1, (group, present)


def test_llm_project_exports_every_format(ls_client, tmp_path):
    project = projects.create_project(ls_client, "export llm", "llm_fine_tuning")
    pairs = {}
    for _, prompt, response in chatterbot_conversations():
        pairs.setdefault(prompt, response)
    pairs = list(pairs.items())[:40]
    tasks = new_tasks(ls_client, project.id, [{"prompt": p} for p, _ in pairs])
    responses = {}
    for task, (_, response) in zip(tasks, pairs):
        ls_client.annotations.create(id=task.id, result=[response_region(response)])
        responses[task.id] = response
    # near-duplicates of five prompts (the encoder is uncased), answered differently
    dup_tasks = new_tasks(ls_client, project.id, [{"prompt": pairs[i][0].upper()} for i in range(5)])
    groups = []
    for i, task in enumerate(dup_tasks):
        ls_client.annotations.create(id=task.id, result=[response_region(f"Another answer, number {i}.")])
        responses[task.id] = f"Another answer, number {i}."
        groups.append({tasks[i].id, task.id})
    bjt, skipped, cancelled, blank = new_tasks(ls_client, project.id, [
        {"prompt": BJT_PROMPT}, {"prompt": "A skipped prompt"}, {"prompt": "A cancelled prompt"},
        {"prompt": "A blank answer"}])
    ls_client.annotations.create(id=bjt.id, result=[response_region(BJT_RESPONSE)])
    responses[bjt.id] = BJT_RESPONSE
    ls_client.annotations.create(id=skipped.id, result=[], was_cancelled=True)
    ls_client.annotations.create(id=cancelled.id, result=[response_region("never exported")], was_cancelled=True)
    ls_client.annotations.create(id=blank.id, result=[response_region("   \n ")])

    first = None
    for fmt in ("openai-chat", "messages", "alpaca", "sharegpt"):
        result = export(ls_client, project.id, tmp_path / fmt, fmt, tmp_path)
        records = check_all_valid(result, fmt)
        assert set(records) == set(responses)  # skipped, cancelled and blank are absent
        assert result.manifest["dropped"]["empty response"] == [blank.id]
        assert_groups_within_one_split(records, groups)
        assert result.manifest["near_duplicates"]["cross_split_pairs"] == 0
        assert result.manifest["near_duplicates"]["pairs"] >= len(groups)
        for task_id, (_, record) in records.items():
            response = verbatim(responses[task_id])
            if fmt in ("openai-chat", "messages"):
                assert record["messages"][-1]["content"] == response
            elif fmt == "alpaca":
                assert record["output"] == response
            else:
                assert record["conversations"][-1]["value"] == response
        first = first or result
    # the canonical example, exactly
    split, _ = read_split_records(first)[bjt.id]
    lines = (first.out_dir / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
    assert BJT_LINE in lines
    # same seed, same bytes; another seed, another split
    again = export(ls_client, project.id, tmp_path / "again", "openai-chat", tmp_path)
    for name in ("train.jsonl", "validation.jsonl", "test.jsonl"):
        assert (again.out_dir / name).read_bytes() == (first.out_dir / name).read_bytes()
    assert again.manifest["files"] == first.manifest["files"]
    other = export(ls_client, project.id, tmp_path / "other", "openai-chat", tmp_path, seed=1)
    assert other.manifest["files"] != first.manifest["files"]

    # bad requests: clear errors, nothing written
    for fmt, message in (("openai-dpo", "does not fit an LLM response project"), ("conll", "does not fit"),
                         ("jsonl", "unknown format")):
        with pytest.raises(LabelloopError, match=message):
            export(ls_client, project.id, tmp_path / f"bad-{fmt}", fmt, tmp_path)
        assert not (tmp_path / f"bad-{fmt}").exists()
    with pytest.raises(LabelloopError, match="--overwrite"):
        export(ls_client, project.id, tmp_path / "openai-chat", "openai-chat", tmp_path)
    replaced = export(ls_client, project.id, tmp_path / "openai-chat", "openai-chat", tmp_path, seed=1,
                      overwrite=True)
    assert replaced.manifest["files"] == other.manifest["files"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp dirs left


def response_region(text):
    return {"from_name": "response", "to_name": "prompt", "type": "textarea", "value": {"text": [text]}}


def test_bjt_example_exports_to_the_exact_openai_line(ls_client, tmp_path):
    project = projects.create_project(ls_client, "bjt", "llm_fine_tuning")
    filler = [(f"What is {n} plus {n}?", f"{n} plus {n} is {2 * n}.") for n in range(12)]
    tasks = new_tasks(ls_client, project.id, [{"prompt": BJT_PROMPT}] + [{"prompt": p} for p, _ in filler])
    for task, response in zip(tasks, [BJT_RESPONSE] + [r for _, r in filler]):
        ls_client.annotations.create(id=task.id, result=[response_region(response)])
    result = export(ls_client, project.id, tmp_path / "out", "openai-chat", tmp_path, fractions="1.0",
                    near_duplicate_threshold=0.999)
    lines = (result.out_dir / "train.jsonl").read_text(encoding="utf-8").splitlines()
    assert lines[0] == BJT_LINE  # tasks keep their Label Studio order within a split


def test_classification_project_uses_consensus_and_exports_every_format(ls_client, tmp_path):
    items = rotten_tomatoes(60, seed=7)
    project = projects.create_project(ls_client, "export classification", "text_classification")
    tasks = new_tasks(ls_client, project.id, [{"text": it.text} for it in items])
    for task, item in zip(tasks, items):
        ls_client.annotations.create(id=task.id, result=[choice(item.label)])
    other = {"Positive": "Negative", "Negative": "Positive"}
    second = ls_client.users.create(username="exporter2", email="exporter2@example.com", password="second-pass-123")
    third = ls_client.users.create(username="exporter3", email="exporter3@example.com", password="third-pass-123")
    # task 0: 2 of 3 annotators outvote the first; task 1: a tie, left out without an audit
    ls_client.annotations.create(id=tasks[0].id, result=[choice(other[items[0].label])], completed_by=second.id)
    ls_client.annotations.create(id=tasks[0].id, result=[choice(other[items[0].label])], completed_by=third.id)
    ls_client.annotations.create(id=tasks[1].id, result=[choice(other[items[1].label])], completed_by=second.id)
    near = new_tasks(ls_client, project.id, [{"text": items[2].text.upper()}])[0]
    ls_client.annotations.create(id=near.id, result=[choice(items[2].label)])
    expected = {t.id: it.label for t, it in zip(tasks, items)}
    expected[tasks[0].id] = other[items[0].label]
    del expected[tasks[1].id]
    expected[near.id] = items[2].label

    for fmt in ("openai-chat", "messages", "alpaca", "sharegpt", "classification-jsonl"):
        result = export(ls_client, project.id, tmp_path / fmt, fmt, tmp_path, system="You label movie reviews.",
                        plot=fmt == "openai-chat")
        records = check_all_valid(result, fmt)
        assert {t: label_of(r, fmt) for t, (_, r) in records.items()} == expected
        assert_groups_within_one_split(records, [{tasks[2].id, near.id}])
        assert tasks[1].id in result.manifest["dropped"]["tied annotators (run labelloop audit to resolve)"]
        counts = result.manifest["counts"]
        assert sum(c["examples"] for c in counts.values()) == len(expected)
        assert counts["train"]["labels"].keys() == {"Positive", "Negative"}  # stratified
    assert (tmp_path / "openai-chat" / "label_distribution.png").exists()
    chat = read_split_records(result)  # classification-jsonl has the text itself
    assert all(r["text"] == verbatim(it.text) for t, it in zip(tasks, items)
               for r in [chat.get(t.id, (None, {"text": verbatim(it.text)}))[1]])


def label_of(record, fmt):
    if fmt in ("openai-chat", "messages"):
        return record["messages"][-1]["content"]
    if fmt == "alpaca":
        return record["output"]
    if fmt == "sharegpt":
        return record["conversations"][-1]["value"]
    return record["label"]


def choice(label):
    return {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [label]}}


def test_ner_project_exports_spans_and_conll(ls_client, tmp_path):
    sentences = [s for s in wnut_entities(400) if s[1]][:40]
    project = projects.create_project(ls_client, "export ner", "ner")
    tasks = new_tasks(ls_client, project.id, [{"text": text} for text, _ in sentences])
    for task, (text, spans) in zip(tasks, sentences):
        ls_client.annotations.create(id=task.id, result=[
            {"from_name": "label", "to_name": "text", "type": "labels",
             "value": {"start": s, "end": e, "text": text[s:e], "labels": [label]}} for s, e, label in spans])
    truth = {t.id: sentence for t, sentence in zip(tasks, sentences)}
    # near-duplicates: upper-cased copies (the encoder is uncased), same spans
    copies = new_tasks(ls_client, project.id, [{"text": sentences[i][0].upper()} for i in range(3)])
    for i, task in enumerate(copies):
        text, spans = sentences[i][0].upper(), sentences[i][1]
        ls_client.annotations.create(id=task.id, result=[
            {"from_name": "label", "to_name": "text", "type": "labels",
             "value": {"start": s, "end": e, "text": text[s:e], "labels": [label]}} for s, e, label in spans])
        truth[task.id] = (text, spans)
    groups = [{tasks[i].id, copies[i].id} for i in range(3)]
    for fmt in ("openai-chat", "messages", "alpaca", "sharegpt", "conll"):
        result = export(ls_client, project.id, tmp_path / fmt, fmt, tmp_path)
        records = check_all_valid(result, fmt)
        assert set(records) == set(truth)
        assert_groups_within_one_split(records, groups)
        assert result.manifest["near_duplicates"]["cross_split_pairs"] == 0
        for task_id, (_, record) in records.items():
            text, spans = truth[task_id]
            if fmt == "conll":
                tags = [line.split("\t")[1] for line in record.strip().splitlines()]
                assert sum(tag.startswith("B-") for tag in tags) == len(spans)
                continue
            answer = json.loads(label_of(record, fmt))
            assert [(a["start"], a["end"], a["label"]) for a in answer] == [tuple(s) for s in spans]
            assert all(a["text"] == text[a["start"]:a["end"]] for a in answer)
    with pytest.raises(LabelloopError, match="does not fit an NER project"):
        export(ls_client, project.id, tmp_path / "bad", "classification-jsonl", tmp_path)


def test_preference_project_exports_dpo(ls_client, tmp_path):
    project = projects.create_project(ls_client, "export preference", "llm_preference")
    pairs = [(f"Explain idea number {n} briefly.", f"A clear, correct explanation of idea {n}.",
              f"idea {n}? dunno") for n in range(14)]
    tasks = new_tasks(ls_client, project.id, [
        {"prompt": p, "answer1": good if n % 2 else bad, "answer2": bad if n % 2 else good}
        for n, (p, good, bad) in enumerate(pairs)])
    for n, task in enumerate(tasks):
        ls_client.annotations.create(id=task.id, result=[{
            "from_name": "preference", "to_name": "prompt", "type": "choices",
            "value": {"choices": ["answer1" if n % 2 else "answer2"]}}])
    for fmt in ("openai-dpo", "messages"):
        result = export(ls_client, project.id, tmp_path / fmt, fmt, tmp_path, fractions="0.9,0.1",
                        near_duplicate_threshold=0.999)
        records = check_all_valid(result, fmt)
        for n, task in enumerate(tasks):
            record = records[task.id][1]
            chosen = record["preferred_output" if fmt == "openai-dpo" else "chosen"][0]["content"]
            rejected = record["non_preferred_output" if fmt == "openai-dpo" else "rejected"][0]["content"]
            assert (chosen, rejected) == pairs[n][1:]


def test_export_command_line(ls_client, label_studio, tmp_path):
    project = projects.create_project(ls_client, "export cli", "llm_fine_tuning")
    tasks = new_tasks(ls_client, project.id, [{"prompt": f"Question {n}: what is {n} squared?"} for n in range(15)])
    for n, task in enumerate(tasks):
        ls_client.annotations.create(id=task.id, result=[response_region(f"{n} squared is {n * n}.")])
    env = {**os.environ, "LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.token,
           "COLUMNS": "200"}
    cmd = [sys.executable, "-m", "labelloop.scripts.cli", "export", "--project", str(project.id), "--format",
           "openai-chat", "--out", str(tmp_path / "out"), "--data", str(tmp_path / "data")]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "train" in done.stdout and "Near-duplicate pairs across splits: 0" in done.stdout
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["command"].startswith("cli.py export --project") and manifest["versions"]["labelloop"]
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 2 and "--overwrite" in again.stdout
    # a project with no finished annotations
    empty = projects.create_project(ls_client, "export empty", "llm_fine_tuning")
    new_tasks(ls_client, empty.id, [{"prompt": "unanswered"}])
    cmd[cmd.index(str(project.id))] = str(empty.id)
    cmd[cmd.index(str(tmp_path / "out"))] = str(tmp_path / "empty")
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 2 and "no finished annotations" in done.stdout
    assert not (tmp_path / "empty").exists()


def test_audit_consensus_and_exclude_flagged(ls_client, tmp_path):
    from labelloop.scripts.audit import run_audit

    items = rotten_tomatoes(200, seed=11)
    project = projects.create_project(ls_client, "export after audit", "text_classification")
    tasks = new_tasks(ls_client, project.id, [{"text": it.text} for it in items])
    flipped = {tasks[i].id for i in range(3, 200, 10)}
    other = {"Positive": "Negative", "Negative": "Positive"}
    for task, item in zip(tasks, items):
        ls_client.annotations.create(id=task.id, result=[choice(other[item.label] if task.id in flipped
                                                                else item.label)])
    # upper-cased copies (the encoder is uncased) with the same labels: hygiene, not findings to review
    copied = [50, 60, 70, 80, 90]
    copies = new_tasks(ls_client, project.id, [{"text": items[i].text.upper()} for i in copied])
    for task, i in zip(copies, copied):
        ls_client.annotations.create(id=task.id, result=[choice(items[i].label)])
    second = ls_client.users.create(username="auditexport", email="auditexport@example.com",
                                    password="second-pass-123")
    ls_client.annotations.create(id=tasks[0].id, result=[choice(other[items[0].label])], completed_by=second.id)

    without = export(ls_client, project.id, tmp_path / "before", "classification-jsonl", tmp_path)
    assert tasks[0].id in without.manifest["dropped"]["tied annotators (run labelloop audit to resolve)"]

    report = run_audit(ls_client, project.id, out_dir=tmp_path / "data", push=False)
    audited = {row["task_id"]: row["label"] for row in map(json.loads, open(
        report.report_dir / "consensus.jsonl", encoding="utf-8"))}
    flagged = {f["task_id"] for f in report.findings if f["review"] and f["likely_error"]}
    # labels the model doubts past Cleanlab's estimate of the errors: queued, but exported
    doubted = {f["task_id"] for f in report.findings if f["review"] and not f["likely_error"]}
    hygiene = {f["task_id"] for f in report.findings if not f["review"]}  # outliers, agreeing copies
    result = export(ls_client, project.id, tmp_path / "after", "classification-jsonl", tmp_path,
                    exclude_flagged=True)
    records = read_split_records(result)
    # the tie now takes the audit's (CROWDLAB) consensus, unless the audit flagged it
    if tasks[0].id not in flagged:
        assert records[tasks[0].id][1]["label"] == audited[tasks[0].id]
    assert flagged and not flagged & set(records)
    assert doubted and doubted <= set(records), (len(doubted), report.messages)
    # a copy the model also doubts is a label finding; the others only go to the report
    assert hygiene & {t.id for t in copies}, [f for f in report.findings if f["task_id"] in {t.id for t in copies}]
    assert not hygiene & set(result.manifest["dropped"].get("unresolved audit finding", []))
    assert sorted(result.manifest["dropped"]["unresolved audit finding"]) == sorted(flagged & set(audited))
    # a reviewer's correction after the audit resolves the finding: the task is exported again
    fixed = next((t for t in tasks[1:] if t.id in flagged), None)
    assert fixed is not None, (report.findings, report.messages)
    truth = items[tasks.index(fixed)].label
    ls_client.annotations.create(id=fixed.id, result=[choice(truth)])
    again = export(ls_client, project.id, tmp_path / "fixed", "classification-jsonl", tmp_path,
                   exclude_flagged=True)
    assert read_split_records(again)[fixed.id][1]["label"] == truth
