"""Past one machine: Label Studio on PostgreSQL, Redis, two backend replicas (two gunicorn workers
each) behind nginx, and an RQ training worker, all real processes on loopback (`labelloop stack`).

The whole loop runs through the proxy; /predict is hammered on the project whose version is
switching; then faults: a replica killed, the worker killed mid-run, Label Studio stopped during a
retrain, Redis stopped. Each ends with the right version serving and no half-written files.
LABELLOOP_KEEP_STACK=1 keeps the stack's logs and data after the tests, to debug a failure.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests

from labelloop.model.datasets import rotten_tomatoes
from labelloop.model.store import ModelStore, project_key
from labelloop.scripts import projects
from labelloop.scripts.audit import ORDER_COLUMN, write_review_order
from labelloop.scripts.client import connect
from labelloop.scripts.filters import save_view

from conftest import _require_or_skip, wait_for

pytestmark = pytest.mark.integration

LABELS = ("Positive", "Negative")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from labelloop.scripts.services import ServiceError, ServiceNotInstalled
    from labelloop.scripts.stack import build_stack, start_stack

    try:
        running = build_stack(tmp_path_factory.mktemp("stack"), replicas=2, workers_per_replica=2, trainers=1)
    except ServiceNotInstalled as exc:  # Debian's postgresql, redis-server or nginx
        _require_or_skip(f"the stack cannot run here: {exc}")
    try:
        start_stack(running)
    except ServiceError:
        running.remove_data()
        raise
    try:
        yield running
    finally:
        running.stop()
        if not os.environ.get("LABELLOOP_KEEP_STACK"):  # keep logs to debug a failure
            running.remove_data()


@pytest.fixture(scope="module")
def client(stack):
    return connect(stack.label_studio.url, stack.credentials.token)


@pytest.fixture(scope="module")
def project(stack, client):
    """A sentiment project connected through the proxy, with 20 annotations trained on by the worker."""
    items = rotten_tomatoes(160, seed=5)
    created = projects.create_project(client, "stack", "text_classification")
    projects.import_tasks(client, created.id, ({"text": it.text, "true_label": it.label} for it in items))
    projects.connect_backend(client, created.id, stack.backend_url)
    created = client.projects.get(id=created.id)
    return SimpleNamespace(id=created.id, key=project_key(created.id, created.created_at),
                           label_config=created.label_config, tasks=list(projects.iter_tasks(client, created.id)))


def annotate(client, task):
    client.annotations.create(id=task.id, result=[{"from_name": "sentiment", "to_name": "text", "type": "choices",
                                                   "value": {"choices": [task.data["true_label"]]}}])


def unannotated(client, project) -> list:
    return [t for t in project.tasks if not list(client.annotations.list(id=t.id))]


def serving(stack, key) -> str | None:
    return ModelStore(stack.model_dir).current_version(key)


def wait_new_version(stack, key, after: str | None, timeout: float, what: str) -> str:
    def newer():
        current = serving(stack, key)
        if current and (after is None or int(current[1:]) > int(after[1:])):
            return current
        return None
    return wait_for(newer, timeout, what)


def assert_nothing_half_written(stack, key):
    project_dir = ModelStore(stack.model_dir).project_dir(key)
    leftovers = [p.name for p in (project_dir / "versions").iterdir() if p.name.startswith(".")]
    leftovers += [p.name for p in project_dir.rglob("*.tmp")]
    assert leftovers == [], leftovers
    store = ModelStore(stack.model_dir)
    assert store.current_version(key) in store.versions(key)


def predict(stack, project, texts, *, timeout=60):
    return requests.post(f"{stack.backend_url}/predict", timeout=timeout, json={
        "tasks": [{"id": i, "data": {"text": t}} for i, t in enumerate(texts)],
        "project": project.key, "label_config": project.label_config})


def psql(stack, sql: str) -> str:
    binary = shutil.which("psql") or sorted(Path("/usr/lib/postgresql").glob("*/bin/psql"))[-1]
    db = stack.database
    done = subprocess.run([str(binary), "-h", db.host, "-p", str(db.port), "-U", db.user, "-d", db.name, "-tAc", sql],
                          capture_output=True, text=True, env={**os.environ, "PGPASSWORD": db.password}, check=True)
    return done.stdout.strip()


def labelloop(stack, *args, timeout=600):
    env = {**os.environ, "LABEL_STUDIO_URL": stack.label_studio.url, "LABEL_STUDIO_API_KEY": stack.credentials.token,
           "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "labelloop.scripts.cli", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


def test_the_whole_loop_runs_on_postgres_through_the_proxy(stack, client, project, tmp_path):
    # Label Studio's data really is in PostgreSQL
    assert int(psql(stack, f"select count(*) from task where project_id = {project.id}")) == 160

    # rank: zero-shot predictions through nginx, a replica and the RQ worker
    labelloop(stack, "rank", "--project", str(project.id), "--timeout", "300")
    assert client.projects.get(id=project.id).model_version.startswith("labelloop-zeroshot-")

    # annotations -> Label Studio's webhooks -> proxy -> replica -> Redis -> worker -> new version
    seed = [t for t in project.tasks if t.data["true_label"] == "Positive"][:10] + \
           [t for t in project.tasks if t.data["true_label"] == "Negative"][:10]
    for task in seed:
        annotate(client, task)
    version = wait_new_version(stack, project.key, None, 300, "the worker to train a first version")
    wait_for(lambda: client.projects.get(id=project.id).model_version.startswith("labelloop-v"), 300,
             "the refreshed predictions' version in Label Studio")
    assert "labelloop-v" in predict(stack, project, ["a fine film"]).json()["model_version"]
    worker_log = stack.workers[0].log_path.read_text()
    assert "serves now" in worker_log, worker_log[-2000:]
    assert int(version[1:]) >= 1

    # behind the proxy the backend still acts only on projects connected to it
    other = projects.create_project(client, "not connected", "text_classification")
    r = requests.post(f"{stack.backend_url}/webhook", json={"action": "START_TRAINING", "project": {"id": other.id}})
    assert r.status_code == 200 and r.json()["status"] == "ignored", r.text
    r = requests.post(f"{stack.backend_url}/webhook", json={"action": "START_TRAINING", "project": {"id": project.id}})
    assert r.status_code == 201 and r.json()["status"] == "queued", r.text

    # audit and export from the same Label Studio
    labelloop(stack, "audit", "--project", str(project.id), "--out", str(tmp_path / "audit"))
    (summary,) = (tmp_path / "audit").glob(f"audit-{project.id}-*/summary.json")
    assert json.loads(summary.read_text())["labelled_tasks"] == 20
    # the review view's positions sort as numbers on PostgreSQL too, 10 after 9 (as text, before 2)
    some = project.tasks[-12:]
    write_review_order(client, [(t.id, 12 - i) for i, t in enumerate(some)])
    view = save_view(client, project.id, "review order check", [], [ORDER_COLUMN], numeric=(ORDER_COLUMN,))
    ids = {t.id for t in some}
    listed = [t.id for t in client.tasks.list(project=project.id, view=view) if t.id in ids]
    assert listed == [t.id for t in reversed(some)]
    labelloop(stack, "export", "--project", str(project.id), "--format", "classification-jsonl",
              "--out", str(tmp_path / "export"))
    manifest = json.loads((tmp_path / "export" / "manifest.json").read_text())
    exported = sum(len(entries) for entries in manifest["examples"].values())
    assert 15 <= exported <= 20, manifest


class Hammer(threading.Thread):
    """/predict through the proxy in a loop; records errors and each answer's version."""

    def __init__(self, stack, project):
        super().__init__(daemon=True)
        self.stack, self.project = stack, project
        self.stop = threading.Event()
        self.versions: list[str] = []
        self.errors: list[str] = []
        self.texts = [t.data["text"] for t in project.tasks]

    def run(self):
        store = ModelStore(self.stack.model_dir)
        i = 0
        while not self.stop.is_set():
            chunk = self.texts[i % 140:i % 140 + 20]
            i += 20
            try:
                r = predict(self.stack, self.project, chunk)
                body = r.json() if r.status_code == 200 else None
                if body is None or len(body["results"]) != len(chunk):
                    self.errors.append(f"{r.status_code}: {r.text[:200]}")
                    continue
                version = body["model_version"]
                if version.startswith("labelloop-v"):
                    # the answer names a complete stored version, right after it came
                    name = version.removeprefix("labelloop-").split("-")[0]
                    if name not in store.versions(self.project.key):
                        self.errors.append(f"{version} is not a complete stored version")
                self.versions.append(version)
            except requests.RequestException as exc:
                self.errors.append(repr(exc))


def version_number(version: str) -> int:
    return int(version.removeprefix("labelloop-v").split("-")[0]) if version.startswith("labelloop-v") else 0


def test_predict_on_the_project_being_retrained_never_fails_and_never_goes_back(stack, client, project):
    before = wait_new_version(stack, project.key, None, 300, "a trained version")
    rest = unannotated(client, project)[:40]
    hammers = [Hammer(stack, project) for _ in range(4)]
    for h in hammers:
        h.start()
    try:
        for burst in range(4):  # annotations stream in; each burst triggers a retrain
            for task in rest[burst * 10:(burst + 1) * 10]:
                annotate(client, task)
            before = wait_new_version(stack, project.key, before, 240, f"the retrain after burst {burst + 1}")
        time.sleep(1.0)
    finally:
        for h in hammers:
            h.stop.set()
        for h in hammers:
            h.join(60)
    errors = [e for h in hammers for e in h.errors]
    assert errors == [], errors[:5]
    for h in hammers:
        numbers = [version_number(v) for v in h.versions]
        assert numbers == sorted(numbers), "a replica served an older version after a newer one"
    served = {v for h in hammers for v in h.versions}
    assert len(served) >= 3, served  # the switches happened while /predict was being called
    assert sum(len(h.versions) for h in hammers) >= 40
    assert_nothing_half_written(stack, project.key)


def test_one_replica_killed_the_proxy_routes_to_the_other(stack, project):
    victim = stack.replicas[0]
    victim.kill()
    try:
        answers = [predict(stack, project, ["what a film"]) for _ in range(30)]
        assert [r.status_code for r in answers] == [200] * 30
        assert all(r.json()["model_version"].startswith("labelloop-v") for r in answers)
    finally:
        victim.start(timeout=180)


def test_a_worker_killed_mid_fit_leaves_the_last_good_version_and_the_next_event_trains(stack, client, project):
    before = serving(stack, project.key)
    unlabelled = unannotated(client, project)
    worker = stack.workers[0]
    fits = worker.log_path.read_text().count("fitting on")
    annotate(client, unlabelled[0])
    deadline = time.monotonic() + 120
    while worker.log_path.read_text().count("fitting on") == fits:  # poll fast: a fit takes about a second
        assert time.monotonic() < deadline, "the worker never started fitting"
        time.sleep(0.01)
    worker.kill()  # kill -9, mid-fit
    current = serving(stack, project.key)
    assert current in ModelStore(stack.model_dir).versions(project.key)
    r = predict(stack, project, ["still serving"])
    assert r.status_code == 200 and r.json()["model_version"] == f"labelloop-{current}"

    # a new worker; the next annotation trains (the dead worker's lock lapses by itself)
    stack.workers.remove(worker)
    stack.add_worker()
    annotate(client, unlabelled[1])
    after = wait_new_version(stack, project.key, current, 240, "a run after the killed one")
    assert int(after[1:]) > int(before[1:])
    assert_nothing_half_written(stack, project.key)


def test_label_studio_stopped_during_a_retrain_is_retried_with_backoff(stack, client, project):
    before = serving(stack, project.key)
    unlabelled = unannotated(client, project)
    worker = stack.workers.pop()
    worker.stop()  # hold the queue: the run starts only once Label Studio is down
    annotate(client, unlabelled[0])
    stack.label_studio.stop()
    try:
        worker = stack.add_worker()
        wait_for(lambda: "unreachable" in worker.log_path.read_text(), 120, "the worker to log Label Studio down")
        log = worker.log_path.read_text()
        assert "retrying in" in log, log[-3000:]
        r = predict(stack, project, ["Label Studio is down, /predict is not"])
        assert r.status_code == 200 and r.json()["model_version"] == f"labelloop-{before}"
    finally:
        stack.label_studio.start(timeout=300)
    wait_new_version(stack, project.key, before, 300, "the retried run once Label Studio is back")
    assert_nothing_half_written(stack, project.key)


def test_redis_stopped_predict_keeps_serving_and_training_resumes_when_it_returns(stack, client, project):
    before = serving(stack, project.key)
    unlabelled = unannotated(client, project)
    stack.redis.stop()
    try:
        answers = [predict(stack, project, ["Redis is down"]) for _ in range(10)]
        assert [r.status_code for r in answers] == [200] * 10
        annotate(client, unlabelled[0])  # its webhook reaches a replica, which cannot queue it yet
        time.sleep(2)
        assert serving(stack, project.key) == before
    finally:
        stack.redis.start(timeout=30)
    wait_new_version(stack, project.key, before, 300, "the run queued once Redis answered again")
    assert_nothing_half_written(stack, project.key)
    assert any("Redis answers again" in r.log_path.read_text() for r in stack.replicas)
