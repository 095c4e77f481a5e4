"""Deleted tasks and annotations never come back, and control characters crash no command:
incremental sync, export, audit and retraining against a real Label Studio."""
import json

import pytest

from labelloop.backend.config import Settings
from labelloop.backend.registry import ModelRegistry
from labelloop.backend.training import project_key, retrain_project
from labelloop.scripts import projects
from labelloop.scripts.audit import run_audit
from labelloop.scripts.client import as_dict
from labelloop.scripts.export import ExportOptions, run_export
from labelloop.scripts.sync import ProjectSnapshot

pytestmark = pytest.mark.integration

# what Label Studio stores and returns as it is (a lone surrogate breaks its own task list)
NASTY = "nul\x00 bell\x07 esc\x1b c1\x85"


def textarea(text):
    return [{"from_name": "response", "to_name": "prompt", "type": "textarea", "value": {"text": [text]}}]


def choice(label):
    return [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]


def exported_ids(manifest):
    return {e["task_id"] for rows in manifest["examples"].values() for e in rows}


def test_export_forgets_deleted_tasks_and_annotations(ls_client, tmp_path, monkeypatch):
    from labelloop.scripts import sync

    index_calls = []
    real_index = sync.task_index
    monkeypatch.setattr(sync, "task_index", lambda *a, **k: index_calls.append(a[1]) or real_index(*a, **k))
    project = projects.create_project(ls_client, "deletions export", "llm_fine_tuning")
    prompts = [f"Question {n}: how many legs does a {animal} have? {NASTY if n == 3 else ''}"
               for n, animal in enumerate(["cat", "bird", "spider", "ant", "dog", "snail", "crab", "horse",
                                           "duck", "bee", "frog", "fish", "worm", "goat"])]
    projects.import_tasks(ls_client, project.id, ({"prompt": p} for p in prompts))
    tasks = list(projects.iter_tasks(ls_client, project.id))
    annotations = {}
    for n, task in enumerate(tasks):
        annotations[task.id] = ls_client.annotations.create(id=task.id, result=textarea(f"Answer {n}. {NASTY}")).id
    options = dict(near_duplicate_threshold=0, fractions="1.0")
    data = tmp_path / "data"
    first = run_export(ls_client, project.id, tmp_path / "out", ExportOptions("openai-chat", **options), data_dir=data)
    assert exported_ids(first.manifest) == {t.id for t in tasks}
    text = (tmp_path / "out" / "train.jsonl").read_text(encoding="utf-8")
    assert "\\u0000" not in text and "Answer 3." in text

    unchanged = run_export(ls_client, project.id, tmp_path / "out",
                           ExportOptions("openai-chat", overwrite=True, **options), data_dir=data)
    assert unchanged.manifest == first.manifest
    assert index_calls == []  # the project's counters matched: no id listing needed

    lost_annotation, lost_task = tasks[0].id, tasks[1].id
    ls_client.annotations.delete(id=annotations[lost_annotation])
    ls_client.tasks.delete(id=lost_task)
    again = run_export(ls_client, project.id, tmp_path / "out", ExportOptions("openai-chat", overwrite=True, **options),
                       data_dir=data)
    assert exported_ids(again.manifest) == {t.id for t in tasks} - {lost_annotation, lost_task}
    assert index_calls == [project.id]  # the counters differed: reconciled through the id listing
    snapshot = ProjectSnapshot(data / "snapshots", project.id).tasks()
    assert lost_task not in snapshot and snapshot[lost_annotation]["annotations"] == []
    # --full pulls everything and agrees
    full = run_export(ls_client, project.id, tmp_path / "out", ExportOptions("openai-chat", overwrite=True, **options),
                      data_dir=data, full=True)
    assert exported_ids(full.manifest) == exported_ids(again.manifest)


def test_retraining_and_audit_forget_deleted_tasks_and_annotations(ls_client, tmp_path, tiny_model):
    project = projects.create_project(ls_client, "deletions training", "text_classification")
    texts = [f"{word} film number {n} {NASTY if n == 2 else ''}" for n, word in
             enumerate(["great", "awful", "superb", "dreadful", "lovely", "boring", "brilliant", "dull",
                        "wonderful", "terrible", "charming", "tedious"])]
    projects.import_tasks(ls_client, project.id, ({"text": t} for t in texts))
    tasks = list(projects.iter_tasks(ls_client, project.id))
    annotations = {}
    for n, task in enumerate(tasks):
        label = "Positive" if n % 2 == 0 else "Negative"
        annotations[task.id] = ls_client.annotations.create(id=task.id, result=choice(label)).id
    settings = Settings(model_dir=str(tmp_path / "models"), model_name=tiny_model)
    registry = ModelRegistry(settings.model_dir, settings.model_name)

    def train():
        return retrain_project(project.id, full=False, settings=settings, registry=registry, client=ls_client)

    assert train().n_labels == 12
    audit = run_audit(ls_client, project.id, out_dir=tmp_path / "audit", model_name=tiny_model, push=False, n_folds=3)
    assert audit.n_labelled == 12

    lost_annotation, lost_task = tasks[0].id, tasks[1].id
    ls_client.annotations.delete(id=annotations[lost_annotation])
    ls_client.tasks.delete(id=lost_task)
    report = train()  # incremental, as an annotation webhook would run it
    assert report.n_labels == 10
    key = project_key(project.id, ls_client.projects.get(id=project.id).created_at)
    kept = ProjectSnapshot(registry.store.project_dir(key), project.id, annotated_only=True).tasks()
    labelled = {t.id for t in tasks} - {lost_annotation, lost_task}
    assert set(kept) == labelled  # a task without annotations leaves the annotated snapshot
    audit = run_audit(ls_client, project.id, out_dir=tmp_path / "audit", model_name=tiny_model, push=False, n_folds=3)
    assert set(audit.task_ids) == labelled
    consensus = (audit.report_dir / "consensus.jsonl").read_text().splitlines()
    assert {json.loads(line)["task_id"] for line in consensus} == labelled
    # the stored task JSON carries the counters the reconciliation compares
    fresh = as_dict(next(iter(ls_client.tasks.list(project=project.id, fields="all"))))
    assert "total_annotations" in fresh and "cancelled_annotations" in fresh
