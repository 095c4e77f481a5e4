"""The backend's HTTP protocol, in-process through Flask's test client."""
import base64
import re

import numpy as np
import pytest

from labelloop.backend.app import create_app
from labelloop.backend.config import Settings
from labelloop.backend.model import LabelloopModel
from labelloop.label_config import load
from labelloop.model.classification.classifier import EmbeddingClassifier
from labelloop.model.store import ModelStore

CONFIG = load("text_classification")
MULTI = load("multi_label_classification")


@pytest.fixture
def make_client(tmp_path, tiny_model):
    def make(**overrides):
        settings = Settings(model_dir=str(tmp_path / "models"), model_name=tiny_model, **overrides)
        app = create_app(settings)
        app.testing = True
        return app.test_client()

    return make


@pytest.fixture
def client(make_client):
    return make_client()


def predict(client, tasks, config=CONFIG, project="1.1700000000"):
    return client.post("/predict", json={"tasks": tasks, "project": project, "label_config": config})


def test_health(client):
    response = client.get("/health")
    assert response.status_code == 200 and response.get_json()["status"] == "UP"


def test_setup_returns_a_model_version_without_loading_weights(client):
    response = client.post("/setup", json={"project": "1.1700000000", "schema": CONFIG})
    assert response.status_code == 200
    assert response.get_json()["model_version"].startswith("labelloop-zeroshot-")


def test_setup_refuses_an_unsupported_config_in_the_status_line(client):
    config = ('<View><Image name="img" value="$image"/><RectangleLabels name="box" toName="img">'
              '<Label value="cat"/></RectangleLabels></View>')
    response = client.post("/setup", json={"project": "1.1", "schema": config})
    assert response.status_code == 422
    # Label Studio shows the HTTP reason phrase to the user
    assert "Unsupported label config" in response.status and "<Choices>" in response.status
    assert "RectangleLabels" in response.get_json()["error"]


@pytest.mark.parametrize("name", ["llm_fine_tuning", "llm_preference"])
def test_setup_of_an_llm_project_without_an_endpoint_says_what_to_set(client, name):
    response = client.post("/setup", json={"project": "1.1", "schema": load(name)})
    assert response.status_code == 502
    assert "LABELLOOP_LLM_MODEL" in response.status  # shown by Label Studio when you connect the model


def test_predict_labels_every_valid_task_in_order(client):
    tasks = [{"id": i, "data": {"text": t}} for i, t in enumerate(["great", "bad", "fine film"])]
    body = predict(client, tasks).get_json()
    assert len(body["results"]) == 3
    for pred in body["results"]:
        (result,) = pred["result"]
        assert result["from_name"] == "sentiment" and result["to_name"] == "text"
        assert result["type"] == "choices" and result["value"]["choices"][0] in ("Positive", "Negative")
        assert 0.0 <= pred["score"] <= 1.0
        assert pred["model_version"] == body["model_version"]


def test_bad_tasks_get_empty_results_and_the_rest_still_predict(client):
    tasks = [
        {"id": 1, "data": {"text": "a fine film"}},
        {"id": 2, "data": {}},                       # missing field
        {"id": 3, "data": {"text": ""}},             # empty
        {"id": 4, "data": {"text": 42}},             # not a string
        "not a task",                                # malformed
        {"id": 6},                                   # no data
        {"id": 7, "data": {"text": "word " * 400_000}},  # 2 MB of text
        {"id": 8, "data": {"text": "caf\udce9 broken \ud800 utf-8"}},  # lone surrogates
    ]
    response = predict(client, tasks)
    assert response.status_code == 200
    results = response.get_json()["results"]
    assert len(results) == len(tasks)
    assert [bool(r["result"]) for r in results] == [True, False, False, False, False, False, True, True]
    # never served first: lower scores are asked first, so unusable tasks get the highest
    assert all(r["score"] == 1.0 for r in results if not r["result"])
    assert min(r["score"] for r in results if r["result"]) < 1.0


def test_a_variant_from_augment_gets_no_served_guess_beside_its_source_s_label(client):
    """Label Studio's Retrieve Predictions sends variants too; their prelabel is their source's label."""
    tasks = [{"id": 1, "data": {"text": "a fine film"}},
             {"id": 2, "data": {"text": "a fine flim", "synthetic_of": 1, "synthetic_method": "typos"}},
             {"id": 3, "data": {"text": "a fine film!", "synthetic_of": ""}},  # no source: the user's own task
             {"id": 4, "data": {"text": "a fine film?", "synthetic_of": "7"}}]
    results = predict(client, tasks).get_json()["results"]
    assert [bool(r) for r in results] == [True, False, True, False]
    assert results[1] == [] and results[3] == []
    assert results[0]["result"] and results[2]["result"]


def test_malformed_requests_get_400_with_a_reason(client):
    response = client.post("/predict", data="{not json", content_type="application/json")
    assert response.status_code == 400 and "JSON object" in response.get_json()["error"]
    response = client.post("/predict", json=["a", "list"])
    assert response.status_code == 400
    response = client.post("/predict", json={"tasks": "nope", "label_config": CONFIG})
    assert response.status_code == 400 and "tasks" in response.get_json()["error"]
    # the server keeps serving
    assert predict(client, [{"id": 1, "data": {"text": "ok"}}]).status_code == 200


def test_multi_label_predictions(client):
    body = predict(client, [{"id": 1, "data": {"text": "the score and the jokes"}}], config=MULTI).get_json()
    choices = body["results"][0]["result"][0]["value"]["choices"]
    assert 1 <= len(choices) <= 5
    assert set(choices) <= {"Acting", "Story", "Visuals", "Music", "Humour"}


def test_basic_auth(make_client):
    client = make_client(basic_auth_user="ls", basic_auth_pass="s3cret")
    assert client.get("/health").status_code == 401
    good = base64.b64encode(b"ls:s3cret").decode()
    bad = base64.b64encode(b"ls:wrong").decode()
    assert client.get("/health", headers={"Authorization": f"Basic {bad}"}).status_code == 401
    assert client.get("/health", headers={"Authorization": f"Basic {good}"}).status_code == 200


def test_predict_batches_model_calls(make_client, monkeypatch):
    client = make_client(batch_size=4)
    calls = []
    from labelloop.model.classification.classifier import ZeroShotClassifier

    original = ZeroShotClassifier.predict_proba

    def spy(self, X):
        calls.append(len(X))
        return original(self, X)

    monkeypatch.setattr(ZeroShotClassifier, "predict_proba", spy)
    tasks = [{"id": i, "data": {"text": f"text {i}"}} for i in range(10)]
    assert len(predict(client, tasks).get_json()["results"]) == 10
    assert calls == [4, 4, 2]


def test_trained_version_serves_and_incompatible_one_falls_back(client, tiny_model, tmp_path):
    store = ModelStore(tmp_path / "models")
    texts = ["good"] * 5 + ["bad"] * 5
    store.save("5.1", EmbeddingClassifier(model_name=tiny_model).fit(texts, ["Positive"] * 5 + ["Negative"] * 5))
    setup = client.post("/setup", json={"project": "5.1", "schema": CONFIG}).get_json()
    assert setup["model_version"] == "labelloop-v1"
    body = predict(client, [{"id": 1, "data": {"text": "good"}}], project="5.1").get_json()
    assert body["results"][0]["model_version"] == "labelloop-v1"
    assert body["results"][0]["result"][0]["value"]["choices"] == ["Positive"]

    # the label config changed: the stored head knows labels the config no longer has
    changed = CONFIG.replace('"Negative"', '"Neutral"')
    setup = client.post("/setup", json={"project": "5.1", "schema": changed}).get_json()
    assert setup["model_version"].startswith("labelloop-zeroshot-")
    body = predict(client, [{"id": 1, "data": {"text": "good"}}], config=changed, project="5.1").get_json()
    assert body["results"][0]["result"][0]["value"]["choices"][0] in ("Positive", "Neutral")


def test_twenty_setup_predict_rounds_load_weights_once(tmp_path, monkeypatch):
    """label-studio-ml re-creates the model on every /setup; the weights must still load once."""
    import transformers

    from labelloop.model.embeddings import resolve_model_path

    loads = []
    original = transformers.AutoModel.from_pretrained

    def counting(*args, **kwargs):
        loads.append(args[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", counting)
    # a model name no other test uses, so this process has not loaded it yet
    name = str(resolve_model_path("default")) + "/"
    app = create_app(Settings(model_dir=str(tmp_path / "m"), model_name=name))
    client = app.test_client()
    instances = []
    original_init = LabelloopModel.__init__

    def tracking_init(self, *args, **kwargs):
        instances.append(self)
        original_init(self, *args, **kwargs)

    monkeypatch.setattr(LabelloopModel, "__init__", tracking_init)
    for i in range(20):
        assert client.post("/setup", json={"project": "9.1", "schema": CONFIG}).status_code == 200
        body = predict(client, [{"id": i, "data": {"text": f"review number {i}"}}], project="9.1").get_json()
        assert body["results"][0]["result"]
    assert len(instances) == 40  # a fresh model object per request, as label-studio-ml does
    assert loads == [name]


def test_strategy_from_extra_params_defines_the_score(client):
    tasks = [{"id": i, "data": {"text": t}} for i, t in enumerate(["great", "bad", "so-so film"])]
    def scores(strategy):
        setup = client.post("/setup", json={"project": "6.1", "schema": CONFIG,
                                             "extra_params": {"strategy": strategy}})
        assert setup.status_code == 200
        return [r["score"] for r in predict(client, tasks, project="6.1").get_json()["results"]]

    confidence, margin = scores("least_confidence"), scores("margin")
    # two labels: margin = 2 * confidence - 1
    np.testing.assert_allclose(margin, [2 * c - 1 for c in confidence], atol=1e-5)
    bad = client.post("/setup", json={"project": "6.1", "schema": CONFIG, "extra_params": {"strategy": "bald"}})
    assert bad.status_code == 422 and "bald" in bad.get_json()["error"]


def test_extra_params_typed_into_label_studio_s_dialog_arrive_as_json_text_and_count(client):
    """Label Studio keeps the Connect Model dialog's text box as a JSON string (docs/screenshot_connect.py)."""
    tasks = [{"id": i, "data": {"text": t}} for i, t in enumerate(["great", "bad", "so-so film"])]

    def scores(extra_params):
        setup = client.post("/setup", json={"project": "7.1", "schema": CONFIG, "extra_params": extra_params})
        assert setup.status_code == 200, setup.get_json()
        return [r["score"] for r in predict(client, tasks, project="7.1").get_json()["results"]]

    as_text = scores('{"strategy": "least_confidence"}')
    assert as_text == scores({"strategy": "least_confidence"})
    assert as_text != scores('{"strategy": "margin"}')
    assert scores("") == scores(None) == scores("  ")  # an empty box: the backend's default
    for bad, reason in (('{"strategy": "margin"', "not JSON"), ('["margin"]', "JSON object.*not list"),
                        ('{"strategy": "bald"}', "bald")):
        response = client.post("/setup", json={"project": "7.1", "schema": CONFIG, "extra_params": bad})
        assert response.status_code == 422 and re.search(reason, response.get_json()["error"]), response.get_json()


NER = load("ner")


def test_ner_setup_and_predict_give_drawable_spans_and_survive_bad_tasks(client):
    setup = client.post("/setup", json={"project": "5.1", "schema": NER,
                                        "extra_params": {"label_map": {"ORG": "sportsteam"}}})
    assert setup.status_code == 200 and setup.get_json()["model_version"].startswith("labelloop-ner-zeroshot-")
    text = "🎉🎉 Barack Obama 😀 flew to London to meet Google staff"
    tasks = [{"id": 1, "data": {"text": text}}, {"id": 2, "data": {"text": ""}}, {"id": 3, "data": {"other": 1}},
             {"id": 4, "data": {"text": "x" * 50_000}}, "not a task"]
    body = client.post("/predict", json={"tasks": tasks, "project": "5.1", "label_config": NER}).get_json()
    first, empty, missing, huge, junk = body["results"]
    assert first["result"] and first["model_version"] == setup.get_json()["model_version"]
    for region in first["result"]:
        value = region["value"]  # Label Studio 1.23 draws code points (docs/screenshot_ner.py)
        assert text[value["start"]:value["end"]] == value["text"]
        assert region["type"] == "labels" and isinstance(region["id"], str) and 0 <= region["score"] <= 1
    assert ("Google", ["sportsteam"]) in [(r["value"]["text"], r["value"]["labels"]) for r in first["result"]]
    assert empty["result"] == [] and missing["result"] == [] and junk["result"] == []
    assert huge["result"] == [] and 0 <= huge["score"] <= 1


def test_ner_setup_refuses_a_label_map_to_a_label_the_config_lacks(client):
    response = client.post("/setup", json={"project": "5.1", "schema": NER, "extra_params": {"label_map": {"ORG": "Team"}}})
    assert response.status_code == 422 and "'Team'" in response.get_json()["error"]
