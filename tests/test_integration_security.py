"""Auth and project checks against a real Label Studio: the whole loop behind Basic auth, and
webhooks for projects that never connected this backend change nothing."""
import time

import pytest
import requests

from labelloop.model.datasets import rotten_tomatoes
from labelloop.scripts import projects
from labelloop.scripts.client import as_dict
from labelloop.scripts.services import backend_service

from test_integration_learning import wait_for

pytestmark = pytest.mark.integration

USER, PASSWORD = "labelstudio", "b4ckend-s3cret"


@pytest.fixture(scope="module")
def auth_backend(tmp_path_factory, label_studio):
    service = backend_service(tmp_path_factory.mktemp("auth-models"), extra_env={
        "LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.token,
        "LABELLOOP_DEBOUNCE_S": "0.3", "BASIC_AUTH_USER": USER, "BASIC_AUTH_PASS": PASSWORD})
    service.start(timeout=120)
    try:
        yield service
    finally:
        service.stop()


def choice(label):
    return [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]


def test_the_loop_works_behind_basic_auth(ls_client, auth_backend):
    url = auth_backend.url
    for path, method in (("/health", "get"), ("/setup", "post"), ("/predict", "post"), ("/webhook", "post")):
        assert getattr(requests, method)(url + path, json={}, timeout=10).status_code == 401, path

    items = rotten_tomatoes(30, seed=5)
    project = projects.create_project(ls_client, "behind auth", "text_classification")
    projects.import_tasks(ls_client, project.id, ({"text": it.text} for it in items))
    projects.connect_backend(ls_client, project.id, url, basic_auth=(USER, PASSWORD))  # /health + /setup

    # Label Studio's own webhook to the backend gets the credentials as a header
    def secured():
        hooks = [as_dict(h) for h in ls_client.webhooks.list(project=str(project.id))]
        return [h for h in hooks if h["url"].rstrip("/") == url + "/webhook"
                and (h.get("headers") or {}).get("Authorization", "").startswith("Basic ")]
    wait_for(secured, 60, "the webhook's Authorization header")

    projects.retrieve_predictions(ls_client, project.id)
    tasks = list(projects.iter_tasks(ls_client, project.id))
    assert all(t.predictions for t in tasks)
    first = as_dict(tasks[0].predictions[0])
    assert first["model_version"].startswith("labelloop-zeroshot-") and first["score"] is not None

    # annotations reach /webhook with the header, and a retrain serves a new version
    for task, item in zip(tasks[:8], items[:8]):
        ls_client.annotations.create(id=task.id, result=choice(item.label))
    key = f"{project.id}.{int(ls_client.projects.get(id=project.id).created_at.timestamp())}"

    def version():
        r = requests.post(url + "/setup", json={"project": key, "schema": project.label_config},
                          auth=(USER, PASSWORD), timeout=10)
        return r.json()["model_version"] if r.status_code == 200 and "-v" in r.json()["model_version"] else None
    assert wait_for(version, 120, "a trained model version").startswith("labelloop-v")
    webhook_statuses = [line.split('"')[2].split()[0] for line in auth_backend.log_path.read_text().splitlines()
                        if '"POST /webhook' in line]
    # the one 401 is this test's own probe without credentials; Label Studio's events all got in
    assert webhook_statuses.count("401") == 1 and webhook_statuses.count("201") >= 8


def test_webhooks_for_projects_that_never_connected_change_nothing(ls_client, auth_backend, backend):
    # a project of the same Label Studio that connected another backend, with labels and predictions
    other = projects.create_project(ls_client, "not ours", "text_classification")
    projects.import_tasks(ls_client, other.id, [{"text": "fine film"}, {"text": "awful film"}])
    projects.connect_backend(ls_client, other.id, backend.url)
    before = {t.id: [as_dict(p)["id"] for p in t.predictions] for t in projects.iter_tasks(ls_client, other.id)}
    models = auth_backend.log_path.parent
    listing = sorted(p.name for p in models.iterdir())
    for action in ("START_TRAINING", "ANNOTATION_CREATED", "ANNOTATIONS_DELETED"):
        r = requests.post(auth_backend.url + "/webhook", auth=(USER, PASSWORD), timeout=10,
                          json={"action": action, "project": {"id": other.id}})
        assert r.status_code == 200 and r.json()["status"] == "ignored", r.text
    time.sleep(2)  # a queued run would have started by now
    assert sorted(p.name for p in models.iterdir()) == listing  # no project folder, no model
    after = {t.id: [as_dict(p)["id"] for p in t.predictions] for t in projects.iter_tasks(ls_client, other.id)}
    assert after == before


def test_a_refused_label_studio_request_leaves_no_session_cookie_in_the_training_log(label_studio, ls_client,
                                                                                   monkeypatch, tmp_path):
    """The SDK's ApiError prints every response header, and Label Studio answers with a session
    cookie; a training run that fails on one is logged (and stored by RQ) with its words only."""
    import traceback

    from label_studio_sdk.core.api_error import ApiError

    from labelloop.backend import training
    from labelloop.backend.config import Settings
    from labelloop.scripts.client import connect

    with pytest.raises(ApiError) as caught:  # a real refusal from the real Label Studio
        connect(label_studio.url, "revoked-token").projects.list()
    assert "sessionid" in str(caught.value) or "set-cookie" in str(caught.value).lower()

    def refused(*args, **kwargs):
        raise caught.value

    monkeypatch.setattr(training, "_retrain", refused)
    settings = Settings.from_env(model_dir=str(tmp_path))
    with pytest.raises(training.LabelStudioRefused) as failed:
        training.retrain_project(1, full=True, settings=settings, registry=None)
    logged = "".join(traceback.format_exception(failed.value))
    assert "Label Studio refused the API key (HTTP 401: Invalid token.)" in logged
    assert "sessionid" not in logged and "set-cookie" not in logged.lower()
