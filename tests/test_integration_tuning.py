"""A tuned retrain end to end: annotations in a real Label Studio -> webhooks -> the backend
(LABELLOOP_TUNE_TRIALS) runs an Optuna study in the background -> the version's metadata and logs."""
import json
import time

import pytest
import requests

from labelloop.label_config import load
from labelloop.model.datasets import rotten_tomatoes
from labelloop.scripts import projects

from conftest import wait_for

pytestmark = pytest.mark.integration


def test_retrain_runs_a_study_and_records_it(ls_client, label_studio, tmp_path):
    from labelloop.scripts.services import backend_service

    model_dir = tmp_path / "models"
    service = backend_service(model_dir, extra_env={
        "LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.token,
        "LABELLOOP_DEBOUNCE_S": "0.3", "LABELLOOP_TUNE_TRIALS": "12", "LABELLOOP_TUNE_SECONDS": "60"})
    service.start(timeout=120)
    try:
        items = rotten_tomatoes(60, seed=31)
        project = projects.create_project(ls_client, "tuned retrain", "text_classification")
        projects.import_tasks(ls_client, project.id, ({"text": it.text} for it in items))
        projects.connect_backend(ls_client, project.id, service.url)
        tasks = sorted(projects.iter_tasks(ls_client, project.id), key=lambda t: t.id)
        for task, item in zip(tasks[:30], items):
            ls_client.annotations.create(id=task.id, result=[
                {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [item.label]}}])

        def tuned_meta():
            for path in model_dir.glob("*/versions/v*/meta.json"):
                meta = json.loads(path.read_text())
                if meta.get("tuning") and meta.get("n_labels") == 30:
                    return meta
            return None

        # /predict answers while the study runs in the background
        config = load("text_classification")
        started = time.monotonic()
        answers = 0
        while tuned_meta() is None and time.monotonic() - started < 120:
            r = requests.post(f"{service.url}/predict", timeout=30, json={
                "tasks": [{"id": tasks[40].id, "data": {"text": items[40].text}}], "project": f"{project.id}.1",
                "label_config": config})
            assert r.status_code == 200
            answers += 1
            time.sleep(0.2)
        wait_for(tuned_meta, 60, "a tuned model version")
        tuning = tuned_meta()["tuning"]
        assert answers >= 1
        assert set(tuning["params"]) == {"C", "prior_strength"} and 1 <= tuning["trials"] <= 12
        assert 0.5 <= tuning["cv_score"] <= 1 and tuning["cv_score"] >= tuning["default_cv_score"]
        assert tuning["metric"] == "accuracy" and tuning["n_folds"] == 5
        log = service.log_path.read_text()
        assert "tuned in" in log and "cross-validated accuracy" in log
    finally:
        service.stop()
