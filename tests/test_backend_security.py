"""What a stranger can do over HTTP: only four routes, limits, content types, auth by default."""
import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from labelloop.backend.app import ROUTES, create_app
from labelloop.backend.config import Settings, UnauthenticatedExposure, check_exposure
from labelloop.backend.model import LabelloopModel
from labelloop.label_config import load

CONFIG = load("text_classification")
UNREACHABLE_LS = "http://127.0.0.1:9"  # discard port: connection refused at once


@pytest.fixture
def make_client(tmp_path, tiny_model):
    def make(**overrides):
        values = dict(model_dir=str(tmp_path / "models"), model_name=tiny_model,
                      label_studio_url=UNREACHABLE_LS, label_studio_api_key="0" * 40)
        values.update(overrides)
        app = create_app(Settings(**values))
        app.testing = True
        return app.test_client()

    return make


def files_under(*roots) -> set:
    return {p for root in roots for p in Path(root).rglob("*")}


@pytest.mark.parametrize("path,method", [("/train", "POST"), ("/versions", "GET"), ("/is_training", "GET"),
                                         ("/metrics", "GET"), ("/", "GET"), ("/admin", "POST")])
def test_only_the_protocol_routes_exist(make_client, path, method):
    client = make_client()
    response = client.open(path, method=method, json={"project": "1.1"})
    assert response.status_code == 404
    assert "serves only" in response.get_json()["error"]


def test_a_traversal_project_in_train_writes_nothing_anywhere(make_client, tmp_path, monkeypatch):
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    client = make_client()
    before = files_under(tmp_path)
    for project in ("../../../../tmp/evil", "../escape", "/etc/cron.d/x"):
        body = {"project": project, "label_config": CONFIG,
                "annotations": [{"result": []}], "tasks": [{"id": 1, "data": {"text": "x"}}]}
        assert client.post("/train", json=body).status_code == 404
        assert client.post("/setup", json={"project": project, "schema": CONFIG,
                                           "extra_params": {"strategy": "margin"}}).status_code == 400
        assert client.post("/predict", json={"project": project, "label_config": CONFIG,
                                             "tasks": [{"id": 1, "data": {"text": "x"}}]}).status_code == 400
    assert files_under(tmp_path) == before
    assert not Path("/tmp/evil").exists()


def test_non_json_bodies_are_refused_before_parsing(make_client):
    client = make_client()
    multipart = client.post("/predict", data={"file": (open(__file__, "rb"), "x.py")},
                            content_type="multipart/form-data")
    assert multipart.status_code == 415 and "application/json" in multipart.get_json()["error"]
    form = client.post("/webhook", data="action=START_TRAINING", content_type="application/x-www-form-urlencoded")
    assert form.status_code == 415
    assert client.post("/setup", data=b"{}", content_type="text/plain").status_code == 415


def test_body_and_task_limits_answer_413_with_the_setting_name(make_client):
    client = make_client(max_request_bytes=4096, max_predict_tasks=3)
    big = {"project": "1.1", "label_config": CONFIG, "tasks": [{"id": 1, "data": {"text": "x" * 5000}}]}
    response = client.post("/predict", json=big)
    assert response.status_code == 413 and "LABELLOOP_MAX_REQUEST_BYTES" in response.get_json()["error"]
    many = {"project": "1.1", "label_config": CONFIG, "tasks": [{"id": i, "data": {"text": "ok"}} for i in range(4)]}
    response = client.post("/predict", json=many)
    assert response.status_code == 413 and "LABELLOOP_MAX_PREDICT_TASKS" in response.get_json()["error"]
    many["tasks"] = many["tasks"][:3]
    assert client.post("/predict", json=many).status_code == 200


def test_every_route_needs_the_credentials_when_set(make_client):
    client = make_client(basic_auth_user="ls", basic_auth_pass="s3cret")
    good = {"Authorization": "Basic " + base64.b64encode(b"ls:s3cret").decode()}
    for path in ROUTES:
        method = "GET" if path == "/health" else "POST"
        response = client.open(path, method=method, json={"project": "1.1", "schema": CONFIG})
        assert response.status_code == 401, path
        assert response.headers["WWW-Authenticate"].startswith("Basic")
    assert client.get("/health", headers=good).status_code == 200
    assert client.post("/setup", headers=good, json={"project": "1.1", "schema": CONFIG}).status_code == 200


def test_webhook_that_cannot_be_verified_queues_nothing(make_client):
    client = make_client()
    trainer = client.application.config["LABELLOOP_TRAINER"]
    response = client.post("/webhook", json={"action": "ANNOTATION_CREATED", "project": {"id": 3}})
    assert response.status_code == 503 and "nothing queued" in response.get_json()["error"]
    assert not trainer.is_busy()


def test_setup_never_replaces_a_configured_token(make_client):
    client = make_client(label_studio_url="http://ls.internal:8080", label_studio_api_key="a" * 40)
    body = {"project": "1.1", "schema": CONFIG, "hostname": "http://evil.example", "access_token": "b" * 40}
    assert client.post("/setup", json=body).status_code == 200
    assert LabelloopModel.settings.label_studio_api_key == "a" * 40
    assert LabelloopModel.settings.label_studio_url == "http://ls.internal:8080"


@pytest.mark.parametrize("host,allowed", [("127.0.0.1", True), ("localhost", True), ("::1", True),
                                          ("0.0.0.0", False), ("10.1.2.3", False), ("backend.example", False)])
def test_off_loopback_needs_credentials(host, allowed):
    bare = Settings()
    if allowed:
        check_exposure(bare, host)
    else:
        with pytest.raises(UnauthenticatedExposure, match="BASIC_AUTH_USER"):
            check_exposure(bare, host)
        check_exposure(bare, host, allow_unauthenticated=True)
        check_exposure(Settings(basic_auth_user="u", basic_auth_pass="p"), host)


def test_serve_refuses_to_listen_publicly_without_auth(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("BASIC_AUTH_USER", "BASIC_AUTH_PASS")}
    result = subprocess.run([sys.executable, "-m", "labelloop.scripts.cli", "serve", "--host", "0.0.0.0",
                             "--port", "1", "--model-dir", str(tmp_path)], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2
    assert "refusing to listen on 0.0.0.0 without authentication" in " ".join(result.stderr.split())
    assert not any(tmp_path.iterdir())


# random JSON values: the shapes a hostile client might send
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63) | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20)
task_like = st.fixed_dictionaries({"id": json_values, "data": st.dictionaries(
    st.sampled_from(["text", "prompt", "x"]), json_values, max_size=3)})
bodies = st.one_of(
    json_values,
    st.fixed_dictionaries({"tasks": st.lists(task_like | json_values, max_size=5),
                           "project": st.sampled_from(["1.1", "2", "../x", "", None]) | json_values,
                           "label_config": st.sampled_from([CONFIG, load("ner"), "<View/>", "<not xml"]) | json_values}),
    st.fixed_dictionaries({"project": st.sampled_from(["1.1", "7.2"]) | json_values,
                           "schema": st.sampled_from([CONFIG, load("llm_fine_tuning"), ""]) | json_values,
                           "extra_params": json_values}),
    st.fixed_dictionaries({"action": st.sampled_from(["ANNOTATION_CREATED", "START_TRAINING", "X"]) | json_values,
                           "project": st.fixed_dictionaries({"id": json_values}) | json_values}),
)


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(["/setup", "/predict", "/webhook"]), body=bodies)
def test_fuzz_random_json_never_gets_a_500(make_client, path, body):
    client = make_client()
    response = client.post(path, data=json.dumps(body), content_type="application/json")
    # 502: an LLM project while no LLM endpoint is configured; 503: Label Studio unreachable
    assert response.status_code < 500 or response.status_code in (502, 503), (path, body, response.get_data()[:300])
    if response.status_code == 502:
        assert b"LLM endpoint" in response.get_data()
    assert client.get("/health").status_code == 200

