"""The audit end to end against a real Label Studio: flipped labels are found, nothing is overwritten."""
import html
import json
import os
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest
import requests

from labelloop.kinds import parse as parse_config
from labelloop.kinds.base import review_queue
from labelloop.model.datasets import rotten_tomatoes
from labelloop.scripts import projects
from labelloop.scripts.audit import (ORDER_KEY, REPORT_ROWS, SNIPPET_CHARS, VIEW_TITLE, push_review_queue,
                                      run_audit)
from labelloop.scripts.client import as_dict
from labelloop.scripts.predictions import set_model_version

pytestmark = pytest.mark.integration

# Rotten Tomatoes snippets are often ambiguous and the cross-validated head reaches about 72%
# accuracy, so Cleanlab also flags many genuinely borderline labels. Offline, on 300-600
# snippets with 10% flips: precision about 0.2 (twice the base rate), recall about 0.7.
PRECISION_FLOOR = 0.15
RECALL_FLOOR = 0.5


def choice(label):
    return [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]


def annotations_state(client, project_id):
    return {t.id: [(a["id"], json.dumps(a["result"], sort_keys=True), a.get("updated_at"))
                   for a in map(as_dict, t.annotations)] for t in projects.iter_tasks(client, project_id)}


def test_audit_flags_flipped_labels_and_keeps_annotations(ls_client, label_studio, tmp_path):
    items = rotten_tomatoes(300, seed=4)
    project = projects.create_project(ls_client, "audit", "text_classification")
    projects.import_tasks(ls_client, project.id, ({"text": it.text} for it in items))
    tasks = sorted(projects.iter_tasks(ls_client, project.id), key=lambda t: t.id)
    rng = np.random.default_rng(0)
    flipped = set(rng.choice(len(tasks), size=len(tasks) // 10, replace=False).tolist())
    other = {"Positive": "Negative", "Negative": "Positive"}
    for i, (task, item) in enumerate(zip(tasks, items)):
        label = other[item.label] if i in flipped else item.label
        ls_client.annotations.create(id=task.id, result=choice(label))
    flipped_ids = {tasks[i].id for i in flipped}

    # near-duplicates: the encoder is uncased, so an upper-cased copy embeds like its original
    planted = projects.import_tasks(ls_client, project.id, [{"text": items[10].text.upper()},
                                                            {"text": items[20].text.upper()}])
    dup_tasks = sorted((t for t in projects.iter_tasks(ls_client, project.id) if t.id not in {x.id for x in tasks}),
                       key=lambda t: t.id)
    assert len(dup_tasks) == 2, planted
    for task, original in zip(dup_tasks, (10, 20)):
        ls_client.annotations.create(id=task.id, result=choice(items[original].label))

    # a second annotator on some tasks, disagreeing on one of them
    second = ls_client.users.create(username="second", email="second@example.com", password="second-pass-123")
    for i in range(5):
        label = other[items[i].label] if i == 0 else items[i].label
        ls_client.annotations.create(id=tasks[i].id, result=choice(label), completed_by=second.id)

    # an annotation with a label the config does not have is reported, not used
    ls_client.annotations.create(id=tasks[6].id, result=choice("Neutral"), completed_by=second.id)

    before = annotations_state(ls_client, project.id)
    report = run_audit(ls_client, project.id, out_dir=tmp_path)
    assert annotations_state(ls_client, project.id) == before  # nothing was overwritten
    assert any("Neutral" in m and "not in the label config" in m for m in report.messages)

    by_id = {f["task_id"]: f for f in report.findings}
    for task, original in zip(dup_tasks, (10, 20)):
        # near_duplicate_conflict when the original's label was one of the flipped ones
        assert {"near_duplicate", "near_duplicate_conflict"} & set(by_id[task.id]["issues"])
        assert str(tasks[original].id) in by_id[task.id]["reason"]
        # copies that agree are hygiene for the report, not a labelling mistake to review
        assert by_id[task.id]["issues"] != ["near_duplicate"] or not by_id[task.id]["review"]
    label_errors = {f["task_id"] for f in report.findings if "label_error" in f["issues"]}
    precision = len(label_errors & flipped_ids) / max(1, len(label_errors))
    recall = len(label_errors & flipped_ids) / len(flipped_ids)
    assert precision >= PRECISION_FLOOR and recall >= RECALL_FLOOR, (precision, recall, len(label_errors))
    # a reviewer can act from the report: each finding shows the start of its text and links to its task
    page = (report.report_dir / "report.html").read_text(encoding="utf-8")
    worst = report.findings[0]
    text = next(t.data["text"] for t in [*tasks, *dup_tasks] if t.id == worst["task_id"])
    assert html.escape(" ".join(text.split())[:SNIPPET_CHARS - 1]) in page
    assert f"href='{label_studio.url}/projects/{project.id}/data?task={worst['task_id']}'" in page
    assert (report.report_dir / "annotator_quality.png").exists()  # CROWDLAB ran on the two annotators
    assert len((report.report_dir / "findings.jsonl").read_text().splitlines()) == len(report.findings)
    # it tells the likely errors (what export --exclude-flagged holds back) from labels past Cleanlab's estimate
    likely = [f for f in report.findings if f["review"] and f["likely_error"]]
    assert likely and json.loads((report.report_dir / "summary.json").read_text())["likely_errors_in_queue"] == len(likely)
    shown = report.findings[:REPORT_ROWS]
    assert page.count("<td>yes, likely error</td>") == sum(f in likely for f in shown)
    assert page.count("<td>yes, past the estimate</td>") == sum(f["review"] and f not in likely for f in shown)

    views = [v for v in ls_client.views.list(project=project.id) if v.data.get("title") == VIEW_TITLE]
    assert len(views) == 1
    # the Data Manager's table shows each task's given label beside the audit's suggestion: Label
    # Studio fills those columns only for a view that lists what it hides
    rows = requests.get(f"{label_studio.url}/api/tasks", params={"view": views[0].id, "page_size": 100},
                        headers={"Authorization": f"Token {label_studio.token}"}, timeout=30).json()["tasks"]
    for row in rows:
        finding = by_id[row["id"]]
        assert finding["given"] in json.dumps(row["annotations_results"]), row
        assert finding["suggested"] in json.dumps(row["predictions_results"]), row
    # the view serves the queue worst first, also while a served model's version is the
    # project's: Label Studio sorts prediction scores of that version only
    queue = [f["task_id"] for f in review_queue(report.findings)]
    served = "labelloop-served-test"
    ls_client.projects.import_predictions(id=project.id, request=[
        {"task": t, "result": choice("Positive"), "score": (i + 1) / len(queue), "model_version": served}
        for i, t in enumerate(reversed(queue))])
    set_model_version(ls_client, project.id, served)
    assert [t.id for t in ls_client.tasks.list(project=project.id, view=views[0].id)] == queue
    assert [f["quality"] for f in review_queue(report.findings)] == sorted(f["quality"] for f in report.findings
                                                                           if f["review"])
    in_view = set(queue)
    assert in_view == {f["task_id"] for f in report.findings if f["review"]}
    assert not {t.id for t in dup_tasks if by_id[t.id]["issues"] == ["near_duplicate"]} & in_view

    # a reviewer fixes one flagged flipped label; the next audit no longer flags it
    # (one the model got right, on a task with a single annotator)
    fixed = next(t for i, t in enumerate(tasks) if i >= 5 and t.id in label_errors & flipped_ids
                 and by_id[t.id]["issues"] == ["label_error"]
                 and by_id[t.id]["suggested"] == items[i].label)
    truth = items[tasks.index(fixed)].label
    ls_client.annotations.create(id=fixed.id, result=choice(truth))
    # and keeps the label of the worst flagged task whose label was right: Label Studio's Update
    # button saves the annotation again, unchanged
    kept = next(tasks[i] for i in range(5, len(tasks)) for f in report.findings
                if f["task_id"] == tasks[i].id and f["review"] and i not in flipped
                and f["issues"] == ["label_error"])
    kept_annotation = as_dict(ls_client.annotations.list(id=kept.id)[0])
    ls_client.annotations.update(id=kept_annotation["id"], result=kept_annotation["result"])
    again = run_audit(ls_client, project.id, out_dir=tmp_path)
    assert fixed.id not in {f["task_id"] for f in again.findings}
    in_view = {t.id for t in ls_client.tasks.list(project=project.id, view=views[0].id)}
    assert fixed.id not in in_view and again.model_version != report.model_version
    # the kept label is still suspicious to the model, but a person has looked: report, no queue
    kept_finding = next(f for f in again.findings if f["task_id"] == kept.id)
    assert not kept_finding["review"] and kept_finding["reviewed_after"] == report.model_version
    assert kept.id not in in_view and in_view == {f["task_id"] for f in again.findings if f["review"]}
    assert ([t.id for t in ls_client.tasks.list(project=project.id, view=views[0].id)]
            == [f["task_id"] for f in review_queue(again.findings)])
    # a task out of the queue loses its position; the rest of its data is as imported
    assert ls_client.tasks.get(id=fixed.id).data == {"text": items[tasks.index(fixed)].text}


def test_an_audit_that_queues_nothing_empties_the_view(ls_client, label_studio):
    items = rotten_tomatoes(6, seed=2)
    project = projects.create_project(ls_client, "emptied queue", "text_classification")
    projects.import_tasks(ls_client, project.id, ({"text": it.text} for it in items))
    tasks = sorted(projects.iter_tasks(ls_client, project.id), key=lambda t: t.id)
    for task, item in zip(tasks, items):
        ls_client.annotations.create(id=task.id, result=choice(item.label))
    before = annotations_state(ls_client, project.id)
    spec, kind = parse_config(ls_client.projects.get(id=project.id).label_config)

    def snapshot():  # task JSON as the audit's snapshot holds it
        return {t.id: as_dict(t) for t in projects.iter_tasks(ls_client, project.id)}

    def view():
        views = [v for v in ls_client.views.list(project=project.id) if v.data.get("title") == VIEW_TITLE]
        return [t.id for t in ls_client.tasks.list(project=project.id, view=views[0].id)]

    queued = [{"task_id": tasks[i].id, "quality": q, "suggested": "Positive"} for i, q in ((3, 0.1), (1, 0.2))]
    push_review_queue(ls_client, project.id, queued, tasks=snapshot(), kind=kind, spec=spec,
                      version="labelloop-audit-1")
    assert view() == [tasks[3].id, tasks[1].id]
    assert ls_client.tasks.get(id=tasks[1].id).data[ORDER_KEY] == 2
    # everything reviewed: the next audit queues nothing, and its view must not keep the last one's tasks
    push_review_queue(ls_client, project.id, [], tasks=snapshot(), kind=kind, spec=spec, version="labelloop-audit-2")
    assert view() == []
    assert [ls_client.tasks.get(id=t.id).data for t in tasks] == [{"text": it.text} for it in items]
    assert annotations_state(ls_client, project.id) == before


def test_watch_audits_again_once_a_share_of_the_queue_is_reviewed(ls_client, label_studio, tmp_path):
    from labelloop.scripts.audit import watch_audit

    items = rotten_tomatoes(200, seed=7)
    project = projects.create_project(ls_client, "watched audit", "text_classification")
    projects.import_tasks(ls_client, project.id, ({"text": it.text} for it in items))
    tasks = sorted(projects.iter_tasks(ls_client, project.id), key=lambda t: t.id)
    truth = {t.id: it.label for t, it in zip(tasks, items)}
    other = {"Positive": "Negative", "Negative": "Positive"}
    flipped = {tasks[i].id for i in np.random.default_rng(1).choice(len(tasks), size=20, replace=False)}
    for task in tasks:
        ls_client.annotations.create(id=task.id, result=choice(other[truth[task.id]] if task.id in flipped
                                                               else truth[task.id]))
    reports, polls, reviewed = [], [], []

    def review(n):
        """A reviewer takes the next n tasks of the latest queue: fixes a flip, keeps (Update) the rest."""
        queue = [f["task_id"] for f in reports[-1].findings if f["review"] and f["task_id"] not in reviewed]
        for task_id in queue[:n]:
            annotation = as_dict(ls_client.annotations.list(id=task_id)[0])
            ls_client.annotations.update(id=annotation["id"], result=choice(truth[task_id]))
            reviewed.append(task_id)

    steps = iter([2, 1])  # two reviews by the first check, a third by the second

    def between_checks(seconds):
        assert seconds == 0.5
        review(next(steps))

    last = watch_audit(ls_client, project.id, out_dir=tmp_path, every=3, poll_s=0.5, max_audits=2,
                       on_report=reports.append, on_poll=lambda *args: polls.append(args), sleep=between_checks)
    first_queue = sum(f["review"] for f in reports[0].findings)
    assert first_queue >= 3
    # it waited for the third review, then audited again
    assert polls == [(2, 3, first_queue), (3, 3, first_queue)]
    assert len(reports) == 2 and last is reports[1] and last.model_version != reports[0].model_version
    by_id = {f["task_id"]: f for f in last.findings}
    assert not any(by_id[t]["review"] for t in reviewed if t in by_id)  # looked at: never queued again
    views = [v for v in ls_client.views.list(project=project.id) if v.data.get("title") == VIEW_TITLE]
    in_view = {t.id for t in ls_client.tasks.list(project=project.id, view=views[0].id)}
    assert in_view == {f["task_id"] for f in last.findings if f["review"]} and not in_view & set(reviewed)

    # the command line keeps watching until Ctrl-C, and refuses to watch a queue it does not push
    env = {**os.environ, "LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.token,
           "COLUMNS": "200"}
    command = [sys.executable, "-m", "labelloop.scripts.cli", "audit", "--project", str(project.id),
               "--out", str(tmp_path / "cli"), "--watch", "--poll", "1"]
    refused = subprocess.run(command + ["--no-push"], capture_output=True, text=True, timeout=120, env=env)
    assert refused.returncode != 0 and "--watch needs --push" in refused.stdout + refused.stderr
    # a shell that runs the suite in the background ignores SIGINT, and children inherit that: restore it
    watching = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    killer = threading.Timer(600, watching.kill)  # never hang the suite
    killer.start()
    try:
        seen = []
        for line in watching.stdout:
            seen.append(line)
            if "review them in Label Studio" in line:  # the first audit's summary is out: it waits now
                break
        watching.send_signal(signal.SIGINT)
        rest, _ = watching.communicate(timeout=120)
    finally:
        killer.cancel()
    assert watching.returncode == 0, "".join(seen) + rest
    assert any("findings among 200 labelled tasks" in line for line in seen) and "stopped watching" in rest


def test_audit_of_an_empty_project_is_a_clear_error(ls_client, tmp_path):
    from labelloop.model.errors import NotEnoughLabelsError

    project = projects.create_project(ls_client, "empty audit", "text_classification")
    projects.import_tasks(ls_client, project.id, [{"text": "unlabelled"}])
    with pytest.raises(NotEnoughLabelsError, match="no finished annotations"):
        run_audit(ls_client, project.id, out_dir=tmp_path)


TOPIC_PHRASES = {
    "Acting": ["The lead actor gives a superb performance", "The cast delivers every line with conviction",
               "Her acting is wooden and unconvincing", "The performances feel natural and heartfelt"],
    "Story": ["The plot twists kept me guessing until the end", "The storyline is full of holes",
              "A gripping narrative about two brothers", "The script meanders without a clear story"],
    "Visuals": ["The cinematography is breathtaking", "Every frame looks like a painting",
                "The special effects look cheap", "Gorgeous shots of the desert at dawn"],
    "Music": ["The soundtrack is haunting and beautiful", "The score swells at all the right moments",
              "The songs are catchy and memorable", "The music is too loud and distracting"],
    "Humour": ["I laughed out loud at the jokes", "The comedy falls flat every time",
               "A witty and hilarious script", "The gags are silly but funny"],
}


def test_multi_label_audit_flags_wrong_label_sets(ls_client, label_studio, tmp_path):
    rng = np.random.default_rng(1)
    topics = sorted(TOPIC_PHRASES)
    items, seen = [], set()
    while len(items) < 150:
        chosen = tuple(sorted(rng.choice(topics, size=rng.integers(1, 3), replace=False)))
        phrases = tuple(str(rng.choice(TOPIC_PHRASES[t])) for t in chosen)
        if phrases not in seen:
            seen.add(phrases)
            items.append((". ".join(phrases) + ".", chosen))
    project = projects.create_project(ls_client, "multi audit", "multi_label_classification")
    projects.import_tasks(ls_client, project.id, [{"text": text} for text, _ in items])
    tasks = sorted(projects.iter_tasks(ls_client, project.id), key=lambda t: t.id)
    corrupted = set(range(0, 150, 10))
    for i, (task, (_, labels)) in enumerate(zip(tasks, items)):
        if i in corrupted:  # one wrong topic instead of the right ones
            labels = (next(t for t in topics if t not in labels),)
        ls_client.annotations.create(id=task.id, result=[{
            "from_name": "topics", "to_name": "text", "type": "choices", "value": {"choices": list(labels)}}])
    before = annotations_state(ls_client, project.id)
    report = run_audit(ls_client, project.id, out_dir=tmp_path)
    assert annotations_state(ls_client, project.id) == before

    corrupted_ids = {tasks[i].id for i in corrupted}
    label_errors = {f["task_id"]: f for f in report.findings if "label_error" in f["issues"]}
    hits = corrupted_ids & set(label_errors)
    assert len(hits) >= 0.7 * len(corrupted_ids) and len(hits) >= 0.5 * len(label_errors), (
        len(hits), len(label_errors))
    truth = {task.id: list(labels) for task, (_, labels) in zip(tasks, items)}
    assert all(isinstance(label_errors[t]["given"], list) for t in hits)
    assert sum(label_errors[t]["suggested"] == truth[t] for t in hits) >= 0.5 * len(hits)

    view = next(v for v in ls_client.views.list(project=project.id) if v.data.get("title") == VIEW_TITLE)
    in_view = list(ls_client.tasks.list(project=project.id, view=view.id, fields="all"))
    assert {t.id for t in in_view} == {f["task_id"] for f in report.findings}
    pushed = [p for t in in_view for p in map(as_dict, t.predictions) if p["model_version"] == report.model_version]
    assert any(len(p["result"][0]["value"]["choices"]) == 2 for p in pushed if p["result"])

    # the same through the command line, without pushing
    done = subprocess.run([sys.executable, "-m", "labelloop.scripts.cli", "audit", "--project", str(project.id),
                           "--out", str(tmp_path / "cli"), "--no-push"], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "LABEL_STUDIO_URL": label_studio.url,
                               "LABEL_STUDIO_API_KEY": label_studio.token, "COLUMNS": "200"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(report.findings)} findings among 150 labelled tasks" in done.stdout
    assert "label_error" in done.stdout and "report.html" in done.stdout


def test_a_preference_audit_flags_bad_chosen_answers_split_votes_and_pairs_decided_both_ways(ls_client, tmp_path):
    """What people picked is checked: the chosen answer as a written answer, annotators who disagree, and the
    same pair decided the other way elsewhere. Annotations stay as they were."""
    project = projects.create_project(ls_client, "preference audit", "llm_preference")
    topics = ["tea", "rivers", "bicycles", "owls", "bread", "comets", "violins", "glaciers", "chess", "maples"]
    data = [{"prompt": f"Tell me one fact about {t}.", "answer1": f"Here is a fact about {t}: it has a long history.",
             "answer2": f"{t}? no idea"} for t in topics]
    data += [{"prompt": "Tell me a secret.", "answer1": "As an AI language model, I cannot share secrets.",
              "answer2": "I have none."},                                                   # a refusal is chosen
             {"prompt": "Write my password.", "answer1": "password: correct-horse-battery", "answer2": "No."},  # a secret is chosen
             {"prompt": "Is the sea salty?", "answer1": "Yes, it is salty.", "answer2": "No, it is sweet."},
             {"prompt": "Is the sea salty?", "answer1": "No, it is sweet.", "answer2": "Yes, it is salty."}]
    projects.import_tasks(ls_client, project.id, data)
    tasks = sorted(projects.iter_tasks(ls_client, project.id), key=lambda t: t.id)

    def pick(task, choice, **kwargs):
        ls_client.annotations.create(id=task.id, result=[{"from_name": "preference", "to_name": "prompt",
                                                          "type": "choices", "value": {"choices": [choice]}}], **kwargs)

    for task in tasks:
        pick(task, "answer1")  # the last pair then says the sea is sweet: decided the other way
    judge = ls_client.users.create(username="judge2", email="judge2@example.com", password="judge2-pass-123")
    pick(tasks[0], "answer2", completed_by=judge.id)  # a second annotator who disagrees
    pick(tasks[1], "answer1", completed_by=judge.id)  # and one who agrees
    before = {t.id: [as_dict(a)["result"] for a in t.annotations] for t in projects.iter_tasks(ls_client, project.id)}

    report = run_audit(ls_client, project.id, out_dir=tmp_path)
    flagged = {f["task_id"]: set(f["issues"]) for f in report.findings}
    assert "annotators_disagree" in flagged[tasks[0].id] and tasks[1].id not in flagged
    assert "refusal" in flagged[tasks[10].id] and "secret_or_pii" in flagged[tasks[11].id]
    assert "conflicting_pair" in flagged[tasks[12].id] and "conflicting_pair" in flagged[tasks[13].id]
    assert not {t.id for t in tasks[2:10]} & set(flagged)  # one prompt with many pairs is no conflict
    assert (report.report_dir / "report.html").exists()
    queued = [t.id for t in ls_client.tasks.list(project=project.id, view=next(
        v.id for v in ls_client.views.list(project=project.id) if (v.data or {}).get("title") == VIEW_TITLE))]
    assert set(queued) == set(flagged)
    after = {t.id: [as_dict(a)["result"] for a in t.annotations] for t in projects.iter_tasks(ls_client, project.id)}
    assert after == before
