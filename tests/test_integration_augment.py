"""`labelloop augment` against a real Label Studio (and the real llama.cpp server for paraphrases):
variants as prelabelled tasks, left alone by the backend's refresh, kept in their source's split."""

import pytest
import requests
from typer.testing import CliRunner

from labelloop.backend.config import Settings
from labelloop.model.datasets import chatterbot_conversations, rotten_tomatoes
from labelloop.scripts import projects
from labelloop.scripts.audit import ORDER_KEY, write_review_order
from labelloop.scripts.augment import MODEL_VERSION, VIEW_TITLE, AugmentError, run_augment
from labelloop.scripts.cli import app
from labelloop.scripts.client import as_dict
from labelloop.scripts.export import ExportOptions, run_export
from labelloop.scripts.prelabel import prelabel_project
from labelloop.scripts.rank import VIEW_TITLE as RANK_VIEW
from labelloop.scripts.rank import rank_project

from conftest import wait_for

pytestmark = pytest.mark.integration


def choice(label):
    return [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]


def all_tasks(client, project_id):
    return {t.id: as_dict(t) for t in projects.iter_tasks(client, project_id)}


def test_typos_become_prelabelled_tasks_that_stay_with_their_source(ls_client, label_studio, backend, tmp_path):
    items = rotten_tomatoes(40, seed=41)
    project = projects.create_project(ls_client, "augment classification", "text_classification")
    projects.import_tasks(ls_client, project.id, ({"text": it.text} for it in items))
    projects.connect_backend(ls_client, project.id, backend.url)
    tasks = sorted(all_tasks(ls_client, project.id).values(), key=lambda t: t["id"])
    label = {}
    for task, item in zip(tasks[:24], items):
        ls_client.annotations.create(id=task["id"], result=choice(item.label))
        label[task["id"]] = item.label
    write_review_order(ls_client, [(tasks[0]["id"], 1)])  # as an audit queues a task first

    cli = ["augment", "--project", str(project.id), "--method", "typos", "--n", "2", "--data", str(tmp_path / "data"),
           "--url", label_studio.url, "--api-key", label_studio.token]
    run = CliRunner().invoke(app, cli)
    assert run.exit_code == 0, run.output
    variants = {tid: t for tid, t in all_tasks(ls_client, project.id).items() if "synthetic_of" in t["data"]}
    assert any(task["data"]["synthetic_of"] == tasks[0]["id"] for task in variants.values())
    assert 24 <= len(variants) <= 48 and f"{len(variants)} typos variants of 24" in " ".join(run.output.split())
    for task in variants.values():
        source = task["data"]["synthetic_of"]
        assert source in label and task["data"]["synthetic_method"] == "typos" and ORDER_KEY not in task["data"]
        assert task["data"]["text"] != next(t["data"]["text"] for t in tasks if t["id"] == source)
        assert not task["annotations"]  # a prediction, never an annotation
        (prediction,) = task["predictions"]
        assert prediction["model_version"] == MODEL_VERSION
        assert prediction["result"][0]["value"]["choices"] == [label[source]]
    assert any(v.data.get("title") == VIEW_TITLE for v in ls_client.views.list(project=project.id))

    # again: nothing new for sources that have typos variants already
    report = run_augment(ls_client, project.id, method="typos", n=2, data_dir=tmp_path / "data")
    assert report.created == 0 and report.already_done == 24

    # a retrain re-predicts the unlabelled tasks; the variants keep their source's label
    ls_client.annotations.create(id=tasks[24]["id"], result=choice(items[24].label))
    label[tasks[24]["id"]] = items[24].label

    def refreshed():
        state = all_tasks(ls_client, project.id)
        fresh = [p for p in state[tasks[30]["id"]]["predictions"] if p["model_version"].startswith("labelloop-v")]
        return state if fresh else None

    state = wait_for(refreshed, 120, "the backend's refresh after a retrain")
    for tid in variants:
        assert [p["model_version"] for p in state[tid]["predictions"]] == [MODEL_VERSION]

    # ranking waits for the tasks the refresh re-predicts, not for the variants it leaves alone,
    # and its view lists those tasks only
    ranked = rank_project(ls_client, project.id, timeout=90)
    assert ranked.unlabelled == ranked.current == len(items) - len(label)
    (view,) = [v for v in ls_client.views.list(project=project.id) if v.data.get("title") == RANK_VIEW]
    in_view = [t.id for t in ls_client.tasks.list(project=project.id, view=view.id)]
    assert len(in_view) == ranked.unlabelled and not set(in_view) & set(variants)
    for tid in variants:
        assert [p["model_version"] for p in all_tasks(ls_client, project.id)[tid]["predictions"]] == [MODEL_VERSION]

    # Label Studio's Retrieve Predictions over every task sends the variants to /predict too: they
    # get no served guess beside their source's label
    response = requests.post(f"{label_studio.url}/api/dm/actions",
                             params={"id": "retrieve_tasks_predictions", "project": project.id},
                             json={"selectedItems": {"all": True, "excluded": []}},
                             headers={"Authorization": f"Token {label_studio.token}"}, timeout=120)
    assert response.status_code == 200, response.text
    state = all_tasks(ls_client, project.id)
    assert all([p["model_version"] for p in state[tid]["predictions"]] == [MODEL_VERSION] for tid in variants)
    assert all(state[t["id"]]["predictions"] for t in tasks)  # the others were predicted

    # a reviewer accepts half of the variants; export keeps each with its source
    accepted = sorted(variants)[::2]
    for tid in accepted:
        ls_client.annotations.create(id=tid, result=choice(label[variants[tid]["data"]["synthetic_of"]]))
    result = run_export(ls_client, project.id, tmp_path / "out", ExportOptions("openai-chat", fractions="0.6,0.2,0.2"),
                        data_dir=tmp_path / "data")
    split_of = {e["task_id"]: name for name, entries in result.manifest["examples"].items() for e in entries}
    assert all(split_of[tid] == split_of[variants[tid]["data"]["synthetic_of"]] for tid in accepted)
    assert {split_of[variants[tid]["data"]["synthetic_of"]] for tid in accepted} != {"train"} or len(accepted) < 6
    assert result.manifest["synthetic"] == {"included": True, "examples": len(accepted), "left_out": 0}
    assert sum(c["synthetic"] for c in result.manifest["counts"].values()) == len(accepted)
    assert result.manifest["near_duplicates"]["cross_split_pairs"] == 0
    without = run_export(ls_client, project.id, tmp_path / "plain", ExportOptions("openai-chat", synthetic=False),
                         data_dir=tmp_path / "data")
    exported = {e["task_id"] for entries in without.manifest["examples"].values() for e in entries}
    assert not exported & set(accepted) and exported == set(label)
    assert without.manifest["synthetic"] == {"included": False, "examples": 0, "left_out": len(accepted)}
    assert sorted(without.manifest["dropped"]["synthetic variant (--no-synthetic)"]) == accepted


def test_a_refresh_spares_variants_created_after_it_listed_the_tasks(ls_client, label_studio):
    """The backend lists unlabelled tasks, predicts, then swaps predictions; `labelloop augment` may
    import variants in between. They are not in the refresh's ``keep`` list, yet keep their prediction."""
    from labelloop.scripts.predictions import push_predictions, replace_unlabelled_predictions

    project = projects.create_project(ls_client, "augment race", "text_classification")
    projects.import_tasks(ls_client, project.id, [{"text": "a plain task"}, {"text": "a variant, added late"},
                                                 {"text": "another plain task"}])
    plain, variant, other = sorted(all_tasks(ls_client, project.id))

    def prediction(task_id, version):
        return {"task": task_id, "result": choice("Positive"), "score": 0.5, "model_version": version}

    def versions():
        state = all_tasks(ls_client, project.id)
        return {tid: sorted(p["model_version"] for p in state[tid]["predictions"]) for tid in state}

    push_predictions(ls_client, project.id, [prediction(plain, "labelloop-v1"), prediction(variant, MODEL_VERSION),
                                             prediction(other, "labelloop-v1")])
    replace_unlabelled_predictions(ls_client, project.id, [prediction(plain, "labelloop-v2")],
                                   model_version="labelloop-v2", keep_versions=(MODEL_VERSION,))
    assert versions() == {plain: ["labelloop-v2"], variant: [MODEL_VERSION], other: []}
    # without the version filter, the late variant would have lost its prediction
    replace_unlabelled_predictions(ls_client, project.id, [prediction(plain, "labelloop-v3")],
                                   model_version="labelloop-v3")
    assert versions() == {plain: ["labelloop-v3"], variant: [], other: []}


def test_paraphrases_from_the_llm_server_and_kinds_it_refuses(ls_client, llm_env, tmp_path, monkeypatch):
    for key, value in llm_env.items():
        monkeypatch.setenv(key, value)
    pairs = {}
    for _, prompt, response in chatterbot_conversations():
        if len(prompt) > 25:
            pairs.setdefault(prompt, response)
    pairs = list(pairs.items())[:6]
    project = projects.create_project(ls_client, "augment llm", "llm_fine_tuning")
    projects.import_tasks(ls_client, project.id, ({"prompt": p} for p, _ in pairs))
    for task, (_, response) in zip(sorted(all_tasks(ls_client, project.id).values(), key=lambda t: t["id"]), pairs):
        ls_client.annotations.create(id=task["id"], result=[
            {"from_name": "response", "to_name": "prompt", "type": "textarea", "value": {"text": [response]}}])
    report = run_augment(ls_client, project.id, method="paraphrase", n=1, data_dir=tmp_path / "data")
    assert report.sources == 6 and report.created >= 1 and report.created + len(report.without_variant) == 6
    answers = dict(pairs)
    state = all_tasks(ls_client, project.id)
    variants = [t for t in state.values() if "synthetic_of" in t["data"]]
    assert len(variants) == report.created
    for task in variants:
        source = state[task["data"]["synthetic_of"]]["data"]["prompt"]
        assert task["data"]["prompt"] != source and task["data"]["synthetic_method"] == "paraphrase"
        (prediction,) = task["predictions"]
        assert prediction["result"][0]["value"]["text"] == [answers[source]]

    # `labelloop prelabel` drafts the project's own prompts and leaves the variants their source's answer
    projects.import_tasks(ls_client, project.id, [{"prompt": "What is the capital of France?"}])
    drafted = prelabel_project(ls_client, project.id, settings=Settings.from_env(model_dir=str(tmp_path / "models")))
    assert (drafted.unlabelled, drafted.imported, drafted.variants) == (1, 1, len(variants))
    state = all_tasks(ls_client, project.id)
    for task in variants:
        assert [p["model_version"] for p in state[task["id"]]["predictions"]] == [MODEL_VERSION]

    ner = projects.create_project(ls_client, "augment ner", "ner")
    with pytest.raises(AugmentError, match="span offsets move"):
        run_augment(ls_client, ner.id, method="typos", data_dir=tmp_path / "data")
    with pytest.raises(AugmentError, match="unknown method"):
        run_augment(ls_client, project.id, method="backtranslate", data_dir=tmp_path / "data")
