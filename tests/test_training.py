"""Label extraction and the background trainer, without a Label Studio server."""
import threading

import pytest

from labelloop.backend import training
from labelloop.backend.config import Settings
from labelloop.backend.registry import ModelRegistry
from labelloop.label_config import load
from labelloop.label_config.spec import parse_label_config
from labelloop.kinds.classification import ClassificationKind
from labelloop.label_config.regions import latest_annotation

labelled_task = ClassificationKind().training_item

SPEC = parse_label_config(load("text_classification"))
MULTI = parse_label_config(load("multi_label_classification"))


def ann(id, labels, updated, cancelled=False, from_name="sentiment"):
    return {"id": id, "was_cancelled": cancelled, "updated_at": updated,
            "result": [{"from_name": from_name, "to_name": "text", "type": "choices",
                        "value": {"choices": list(labels)}}] if labels is not None else []}


def test_latest_usable_annotation_wins():
    anns = [ann(1, ["Positive"], "2026-01-01T00:00:00Z"),
            ann(2, ["Negative"], "2026-01-03T00:00:00Z", cancelled=True),   # skipped
            ann(3, None, "2026-01-04T00:00:00Z"),                           # empty result
            ann(4, ["Negative"], "2026-01-02T00:00:00Z")]
    assert latest_annotation(anns)["id"] == 4
    assert latest_annotation([ann(1, ["Positive"], "x", cancelled=True)]) is None


def test_labelled_task_drops_unknown_labels_with_a_log_line(caplog):
    task = {"id": 7, "data": {"text": "t"}, "annotations": [ann(1, ["Neutral"], "2026")]}
    assert labelled_task(task, SPEC) is None
    assert "not in the label config" in caplog.text and "Neutral" in caplog.text
    task["annotations"] = [ann(1, ["Neutral", "Positive"], "2026")]
    assert labelled_task(task, SPEC).labels == ("Positive",)


def test_labelled_task_multi_label_and_missing_text():
    task = {"id": 8, "data": {"text": "t"},
            "annotations": [ann(1, ["Story", "Music"], "2026", from_name="topics")]}
    assert labelled_task(task, MULTI).labels == ("Story", "Music")
    assert labelled_task({"id": 9, "data": {}, "annotations": task["annotations"]}, MULTI) is None


def test_trainer_debounces_a_burst_into_one_run(monkeypatch, tmp_path):
    runs = []
    monkeypatch.setattr(training, "retrain_project",
                        lambda pid, full, **kw: runs.append((pid, full)) or training.RunReport(pid))
    settings = Settings(model_dir=str(tmp_path), debounce_s=0.2)
    trainer = training.Trainer(settings, ModelRegistry(str(tmp_path), "default"))
    for _ in range(10):
        trainer.submit(3, "ANNOTATION_CREATED")
    trainer.submit(3, "ANNOTATIONS_DELETED")
    trainer.submit(4, "ANNOTATION_UPDATED")
    assert trainer.wait_idle(10)
    assert sorted(runs) == [(3, True), (4, False)]


def test_a_failing_run_does_not_stop_the_trainer(monkeypatch, tmp_path):
    calls = []

    def flaky(pid, full, **kw):
        calls.append(pid)
        if pid == 1:
            raise RuntimeError("boom")
        return training.RunReport(pid)

    monkeypatch.setattr(training, "retrain_project", flaky)
    trainer = training.Trainer(Settings(model_dir=str(tmp_path)), ModelRegistry(str(tmp_path), "default"),
                               debounce_s=0.0)
    trainer.submit(1, "START_TRAINING")
    assert trainer.wait_idle(10)
    trainer.submit(2, "START_TRAINING")
    assert trainer.wait_idle(10)
    assert calls == [1, 2]


def test_webhook_answers_at_once_while_training_runs(monkeypatch, tmp_path, tiny_model):
    from labelloop.backend.app import create_app

    started, release = threading.Event(), threading.Event()

    def slow(pid, full, **kw):
        started.set()
        release.wait(10)
        return training.RunReport(pid)

    monkeypatch.setattr(training, "retrain_project", slow)
    app = create_app(Settings(model_dir=str(tmp_path), model_name=tiny_model, debounce_s=0.0))
    # Label Studio's answer to "did project 11 connect this backend?" (checked for real in
    # test_integration_security): yes
    monkeypatch.setattr(app.config["LABELLOOP_CONNECTIONS"], "is_connected", lambda project, url: project == 11)
    client = app.test_client()
    r = client.post("/webhook", json={"action": "ANNOTATION_CREATED", "project": {"id": 11}})
    assert r.status_code == 201
    assert started.wait(5)
    assert not release.is_set()  # the answer came while the run is still blocked
    body = client.post("/predict", json={"tasks": [{"id": 1, "data": {"text": "x"}}], "project": "11.1",
                                         "label_config": load("text_classification")}).get_json()
    assert len(body["results"]) == 1  # /predict is served while the run is in progress
    release.set()
    assert app.config["LABELLOOP_TRAINER"].wait_idle(10)


@pytest.mark.parametrize("payload, status", [
    ({"action": "PROJECT_UPDATED", "project": {"id": 1}}, "ignored"),
    ({"action": "ANNOTATION_CREATED"}, "ignored"),
    ({"action": "ANNOTATION_CREATED", "project": {"id": "1"}}, "ignored"),
])
def test_webhooks_that_do_not_train(payload, status, tmp_path, tiny_model):
    from labelloop.backend.app import create_app

    client = create_app(Settings(model_dir=str(tmp_path), model_name=tiny_model)).test_client()
    r = client.post("/webhook", json=payload)
    assert r.status_code == 200 and r.get_json()["status"] == status


class FakeProjects:
    def __init__(self, config):
        from datetime import datetime, timezone

        self.project = type("P", (), {"label_config": config, "title": "fake", "created_at": datetime(2026, 1, 1, tzinfo=timezone.utc)})

    def get(self, id):
        return self.project


class FakeTasks:
    """The SDK's ``tasks.list`` over fixed tasks; ``changed`` are those an ``updated_at`` filter
    returns. (Label Studio refuses to drop a label that annotations use, so a config change
    under existing labels cannot be staged on a real server.)"""

    def __init__(self, tasks):
        self.tasks, self.changed = tasks, tasks

    def list(self, **kwargs):
        if kwargs.get("include"):  # the id-only index
            return iter({"id": t["id"]} for t in self.tasks)
        return iter(self.changed if "updated_at" in (kwargs.get("query") or "") else self.tasks)


class FakeClient:
    def __init__(self, tasks):
        self.tasks = FakeTasks(tasks)


def test_labels_removed_from_the_config_are_not_trained_on(tmp_path, tiny_model, caplog, monkeypatch):
    """A config change between versions: stale labels are dropped, and the new model fits the config."""
    from labelloop.scripts import predictions

    old_tasks = [{"id": i, "data": {"text": f"text {i}"}, "annotations": [ann(i, [lab], "1")]}
                 for i, lab in enumerate(["Positive", "Negative", "Neutral"] * 4)]
    three = load("text_classification").replace('<Choice value="Negative"/>',
                                                '<Choice value="Negative"/><Choice value="Neutral"/>')
    client = FakeClient(old_tasks)
    client.projects = FakeProjects(three)
    monkeypatch.setattr(predictions, "replace_unlabelled_predictions", lambda *a, **k: 0)
    monkeypatch.setattr(predictions, "unlabelled_tasks", lambda *a, **k: iter(()))
    settings = Settings(model_dir=str(tmp_path), model_name=tiny_model)
    registry = ModelRegistry(str(tmp_path), tiny_model)
    first = training.retrain_project(1, full=True, settings=settings, registry=registry, client=client)
    assert first.trained_version == "v1" and first.n_labels == 12

    client.projects = FakeProjects(load("text_classification"))  # "Neutral" was removed
    client.tasks.changed = []  # nothing changed in Label Studio since
    second = training.retrain_project(1, full=False, settings=settings, registry=registry, client=client)
    assert second.trained_version == "v2" and second.n_labels == 8
    assert "not in the label config" in caplog.text and "Neutral" in caplog.text
    assert second.serving_version == "labelloop-v2"  # not the zero-shot fallback
    assert registry.store.versions("1.1767225600") == ["v1", "v2"]  # the old model is kept
    # the C that "auto" chose is recorded; on 8 labels the folds cannot tell 4 from 1
    assert registry.store.read_meta("1.1767225600", "v2")["head_C"] == 1.0
