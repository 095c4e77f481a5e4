"""Active learning end to end: ranking, retraining from webhooks, Label Studio's own next task."""
import json
import threading
import time
from collections import Counter

import pytest
import requests

from labelloop.label_config import load
from labelloop.model.datasets import rotten_tomatoes
from labelloop.scripts import projects
from labelloop.scripts.client import as_dict
from labelloop.scripts.prelabel import backend_params
from labelloop.scripts.rank import VIEW_TITLE, rank_project

from conftest import wait_for

pytestmark = pytest.mark.integration


def choice(label):
    return [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]


class PredictHammer(threading.Thread):
    """Calls /predict in a loop while training runs; records every failure."""

    def __init__(self, url, config):
        super().__init__(daemon=True)
        self.url, self.config = url, config
        self.stop = threading.Event()
        self.ok, self.errors = 0, []

    def run(self):
        texts = [item.text for item in rotten_tomatoes(200, seed=11)]
        i = 0
        while not self.stop.is_set():
            chunk = texts[i % 180:i % 180 + 20]
            i += 20
            try:
                r = requests.post(f"{self.url}/predict", timeout=30, json={
                    "tasks": [{"id": k, "data": {"text": t}} for k, t in enumerate(chunk)],
                    "project": "999999.1", "label_config": self.config})
                if r.status_code == 200 and len(r.json()["results"]) == len(chunk):
                    self.ok += 1
                else:
                    self.errors.append(f"{r.status_code}: {r.text[:200]}")
            except requests.RequestException as exc:
                self.errors.append(repr(exc))


def current_predictions(client, project_id):
    out = {}
    for task in projects.iter_tasks(client, project_id):
        out[task.id] = (task, [as_dict(p) for p in task.predictions])
    return out


def test_rank_retrain_and_next_task(ls_client, label_studio, backend):
    config = load("text_classification")
    items = rotten_tomatoes(120, seed=21)
    project = projects.create_project(ls_client, "active learning", "text_classification")
    projects.import_tasks(ls_client, project.id, ({"text": it.text, "true_label": it.label} for it in items))
    projects.connect_backend(ls_client, project.id, backend.url)

    # Rank before any label: zero-shot predictions with clusters (this backend turns them on),
    # uncertainty sampling, a view
    report = rank_project(ls_client, project.id, strategy="margin", timeout=180)
    assert report.model_version.startswith("labelloop-zeroshot-")
    assert report.current == report.unlabelled == 120
    assert ls_client.projects.get(id=project.id).sampling == "Uncertainty sampling"
    views = [v for v in ls_client.views.list(project=project.id) if v.data.get("title") == VIEW_TITLE]
    assert len(views) == 1 and views[0].data["ordering"] == ["tasks:predictions_score"]
    state = current_predictions(ls_client, project.id)
    clusters = {preds[0]["cluster"] for _, preds in state.values()}
    assert len(clusters) > 3 and None not in clusters, list(state.values())[0][1]

    hammer = PredictHammer(backend.url, config)
    hammer.start()
    try:
        # Seed set: 10 of each label, annotated through the SDK; webhooks trigger training
        tasks = [t for t, _ in state.values()]
        seed = [t for t in tasks if t.data["true_label"] == "Positive"][:10] + \
               [t for t in tasks if t.data["true_label"] == "Negative"][:10]
        for task in seed:
            ls_client.annotations.create(id=task.id, result=choice(task.data["true_label"]))

        unlabelled = set(state) - {s.id for s in seed}

        def refreshed():
            # the 20 webhooks may give several versions in a row; wait for the last to settle
            version = ls_client.projects.get(id=project.id).model_version or ""
            if not version.startswith("labelloop-v"):
                return None
            current = current_predictions(ls_client, project.id)
            done = all(len(current[t][1]) == 1 and current[t][1][0]["model_version"] == version
                       for t in unlabelled)
            return (version, current) if done else None

        version, current = wait_for(refreshed, 240, "every unlabelled task to carry the trained version")
        time.sleep(1.0)  # keep hammering a moment after the switch
    finally:
        hammer.stop.set()
        hammer.join(timeout=60)
    assert hammer.errors == [], hammer.errors[:3]
    assert hammer.ok >= 5

    # Label Studio's own next-task API serves the least-solved cluster, lowest score first
    solved_clusters = Counter(max((p["cluster"] for p in current[s.id][1] if p["cluster"] is not None),
                                  default=None) for s in seed)
    keys = {tid: (solved_clusters.get(current[tid][1][0]["cluster"], 0), current[tid][1][0]["score"])
            for tid in unlabelled}
    best = min(keys.values())
    response = requests.get(f"{label_studio.url}/api/projects/{project.id}/next/",
                            headers={"Authorization": f"Token {label_studio.token}"})
    assert response.status_code == 200, response.text
    served = response.json()["id"]
    assert served in unlabelled and keys[served] == best, (served, keys[served], best)

    # the trained head beats the zero-shot prelabels on the hidden labels
    correct = sum(current[t][1][0]["result"][0]["value"]["choices"][0] == current[t][0].data["true_label"]
                  for t in unlabelled)
    assert correct / len(unlabelled) > 0.6


def test_bad_webhooks_and_labels_are_logged_not_fatal(ls_client, backend):
    # a webhook for a project Label Studio does not have: ignored, nothing queued
    r = requests.post(f"{backend.url}/webhook", json={"action": "ANNOTATION_CREATED", "project": {"id": 987654}})
    assert r.status_code == 200 and r.json()["status"] == "ignored"
    # a webhook without a project, and an event that does not train
    assert requests.post(f"{backend.url}/webhook", json={"action": "ANNOTATION_CREATED"}).status_code == 200
    assert requests.post(f"{backend.url}/webhook", json={"action": "PROJECT_UPDATED",
                                                          "project": {"id": 1}}).json()["status"] == "ignored"

    # an annotation whose label is not in the config
    project = projects.create_project(ls_client, "bad labels", "text_classification")
    projects.import_tasks(ls_client, project.id, [{"text": "fine"}, {"text": "awful"}])
    projects.connect_backend(ls_client, project.id, backend.url)
    task_ids = [t.id for t in projects.iter_tasks(ls_client, project.id)]
    ls_client.annotations.create(id=task_ids[0], result=choice("Neutral"))
    log = backend.log_path

    wait_for(lambda: "987654, which has not connected this backend" in log.read_text(),
             60, "the unknown-project log line")
    wait_for(lambda: "'Neutral'" in log.read_text() and "not in the label config" in log.read_text(),
             60, "the unknown-label log line")
    assert requests.get(f"{backend.url}/health").status_code == 200
    r = requests.post(f"{backend.url}/predict", json={"tasks": [{"id": 1, "data": {"text": "ok"}}],
                                                       "project": "424242.1", "label_config": load("text_classification")})
    assert r.status_code == 200


def test_rank_without_a_backend_is_a_clear_error(ls_client):
    from labelloop.scripts.rank import RankError

    project = projects.create_project(ls_client, "no backend", "text_classification")
    with pytest.raises(RankError, match="no ML backend"):
        rank_project(ls_client, project.id)
    assert ls_client.projects.get(id=project.id).sampling != "Uncertainty sampling"  # nothing changed


def test_rank_with_nothing_unlabelled_returns_at_once(ls_client, backend):
    project = projects.create_project(ls_client, "nothing to rank", "text_classification")
    projects.connect_backend(ls_client, project.id, backend.url)
    # the old loop waited for a model version that a refresh with nothing to predict never sets
    report = rank_project(ls_client, project.id, timeout=60)
    assert (report.unlabelled, report.current, report.missing) == (0, 0, 0)
    assert ls_client.projects.get(id=project.id).sampling == "Uncertainty sampling"
    assert VIEW_TITLE in [(v.data or {}).get("title") for v in ls_client.views.list(project=project.id)]


def test_extra_params_typed_into_the_dialog_are_read_and_kept_as_text(ls_client, label_studio, backend):
    project = projects.create_project(ls_client, "params from the dialog", "text_classification")
    projects.connect_backend(ls_client, project.id, backend.url)
    [ml] = ls_client.ml.list(project=project.id)
    api = f"{label_studio.url}/api/ml/{ml.id}"
    auth = {"Authorization": f"Token {label_studio.token}"}
    # what Label Studio's Connect Model dialog saves: its text box, as JSON text
    typed = '{"strategy": "least_confidence", "note": "mine"}'
    assert requests.patch(api, headers=auth, timeout=30, json={"url": ml.url, "project": project.id,
                                                               "extra_params": typed}).ok
    assert requests.get(api, headers=auth, timeout=30).json()["extra_params"] == typed
    assert backend_params(ls_client, project.id) == {"strategy": "least_confidence", "note": "mine"}

    report = rank_project(ls_client, project.id, strategy="entropy", timeout=60)
    assert report.strategy == "entropy"
    stored = requests.get(api, headers=auth, timeout=30).json()["extra_params"]
    # still text the dialog can show, and the user's other setting is kept
    assert isinstance(stored, str) and json.loads(stored) == {"strategy": "entropy", "note": "mine"}
