"""`labelloop evaluate` on splits exported from a real Label Studio: answers from the real
llama.cpp server, or from files; the report, and earlier runs side by side."""
import json

import pytest
from typer.testing import CliRunner

from labelloop.model.datasets import chatterbot_conversations, rotten_tomatoes, wnut_entities
from labelloop.scripts import projects
from labelloop.scripts.cli import app
from labelloop.scripts.export import ExportOptions, run_export

from conftest import LLM_API_KEY

pytestmark = pytest.mark.integration


def new_tasks(client, project_id, data):
    projects.import_tasks(client, project_id, data)
    return sorted(projects.iter_tasks(client, project_id), key=lambda t: t.id)


def test_generation_against_the_llm_server_then_an_answers_file(ls_client, llm_server, tmp_path):
    pairs = {}
    for _, prompt, response in chatterbot_conversations():
        pairs.setdefault(prompt, response)
    pairs = list(pairs.items())[100:124]
    project = projects.create_project(ls_client, "evaluate llm", "llm_fine_tuning")
    for task, (_, response) in zip(new_tasks(ls_client, project.id, [{"prompt": p} for p, _ in pairs]), pairs):
        ls_client.annotations.create(id=task.id, result=[
            {"from_name": "response", "to_name": "prompt", "type": "textarea", "value": {"text": [response]}}])
    result = run_export(ls_client, project.id, tmp_path / "out", ExportOptions("openai-chat", fractions="0.5,0.25,0.25"),
                        data_dir=tmp_path / "data")
    split = result.out_dir / "test.jsonl"
    references = [json.loads(line)["messages"][-1]["content"] for line in split.read_text().splitlines()]
    assert len(references) >= 4

    run = CliRunner().invoke(app, ["evaluate", "--split", str(split), "--endpoint", llm_server.url + "/v1",
                                   "--model", "smollm2", "--api-key", LLM_API_KEY, "--max-tokens", "32"])
    assert run.exit_code == 0, run.output
    folder = result.out_dir / "evaluations" / "smollm2"
    model_run = json.loads((folder / "metrics.json").read_text())
    assert model_run["task"] == "generation" and model_run["examples"] == len(references)
    assert model_run["failed_answers"] == 0
    assert 0 <= model_run["bleu"] < 100 and 0 < model_run["chrf"] < 100 and 0 <= model_run["rouge_l"] < 1
    assert 0 < model_run["bertscore_f1"] < 1
    assert model_run["perplexity"]["perplexity"] > 1 and model_run["perplexity"]["tokens"] > len(references)
    meteor = model_run["meteor"]
    assert isinstance(meteor, float) or "WordNet" in meteor["unavailable"]
    assert (folder / "report.html").exists() and (folder / "per_example.png").exists()
    assert "perplexity" in run.output and "report:" in run.output

    # the references themselves as answers: a perfect run, shown beside the model's
    perfect = tmp_path / "perfect.jsonl"
    perfect.write_text("".join(json.dumps({"answer": r}) + "\n" for r in references))
    run = CliRunner().invoke(app, ["evaluate", "--split", str(split), "--answers", str(perfect)])
    assert run.exit_code == 0, run.output
    folder = result.out_dir / "evaluations" / "perfect"
    oracle = json.loads((folder / "metrics.json").read_text())
    assert oracle["bleu"] == pytest.approx(100) and oracle["rouge_l"] == pytest.approx(1.0)
    assert oracle["bertscore_f1"] == pytest.approx(1.0, abs=1e-3) and oracle["chrf"] == pytest.approx(100)
    assert oracle["bleu"] > model_run["bleu"] and oracle["perplexity"] == model_run["perplexity"]  # same references
    assert (folder / "comparison.png").exists()
    report = (folder / "report.html").read_text()
    assert "smollm2" in report and "perfect" in report  # side by side
    assert "smollm2" in run.output and "(this run)" in run.output

    # an answers file that does not pair up with the split: a clear error, nothing written over
    short = tmp_path / "short.jsonl"
    short.write_text(json.dumps("only one") + "\n")
    run = CliRunner().invoke(app, ["evaluate", "--split", str(split), "--answers", str(short), "--name", "perfect"])
    assert run.exit_code != 0 and "line i must answer" in str(run.exception)
    assert json.loads((folder / "metrics.json").read_text())["bleu"] == pytest.approx(100)


def test_classification_and_ner_splits_from_answer_files(ls_client, tmp_path):
    items = rotten_tomatoes(40, seed=3)
    project = projects.create_project(ls_client, "evaluate classification", "text_classification")
    for task, item in zip(new_tasks(ls_client, project.id, [{"text": it.text} for it in items]), items):
        ls_client.annotations.create(id=task.id, result=[{"from_name": "sentiment", "to_name": "text", "type": "choices",
                                                          "value": {"choices": [item.label]}}])
    result = run_export(ls_client, project.id, tmp_path / "cls", ExportOptions("openai-chat", fractions="0.5,0.25,0.25"),
                        data_dir=tmp_path / "data")
    split = result.out_dir / "test.jsonl"
    labels = [json.loads(line)["messages"][-1]["content"] for line in split.read_text().splitlines()]
    # wrong on the first two, chatty on the third, no label on the fourth
    flip = {"Positive": "Negative", "Negative": "Positive"}
    answers = [flip[labels[0]], flip[labels[1]], f"I would say {labels[2].lower()}.", "no idea", *labels[4:]]
    path = tmp_path / "answers.jsonl"
    path.write_text("".join(json.dumps(a) + "\n" for a in answers))
    run = CliRunner().invoke(app, ["evaluate", "--split", str(split), "--answers", str(path)])
    assert run.exit_code == 0, run.output
    metrics = json.loads((result.out_dir / "evaluations" / "answers" / "metrics.json").read_text())
    assert metrics["task"] == "classification"
    assert metrics["accuracy"] == pytest.approx((len(labels) - 3) / len(labels))
    assert metrics["unparsed_answers"] == 1 and set(metrics["per_label"]) == {"Negative", "Positive"}
    assert sum(map(sum, metrics["confusion"]["matrix"])) == len(labels)
    assert (result.out_dir / "evaluations" / "answers" / "confusion_matrix.png").exists()

    sentences = [s for s in wnut_entities(400) if len(s[1]) >= 1][:24]
    project = projects.create_project(ls_client, "evaluate ner", "ner")
    for task, (text, spans) in zip(new_tasks(ls_client, project.id, [{"text": t} for t, _ in sentences]), sentences):
        ls_client.annotations.create(id=task.id, result=[
            {"from_name": "label", "to_name": "text", "type": "labels",
             "value": {"start": s, "end": e, "text": text[s:e], "labels": [label]}} for s, e, label in spans])
    result = run_export(ls_client, project.id, tmp_path / "ner", ExportOptions("openai-chat", fractions="0.5,0.25,0.25"),
                        data_dir=tmp_path / "data")
    split = result.out_dir / "test.jsonl"
    references = [json.loads(json.loads(line)["messages"][-1]["content"]) for line in split.read_text().splitlines()]
    n_entities = sum(map(len, references))
    # the first example's entities are left out; the others found without offsets (located by their text)
    answers = [[]] + [[{"text": s["text"], "label": s["label"]} for s in spans] for spans in references[1:]]
    path = tmp_path / "ner-answers.jsonl"
    path.write_text("".join(json.dumps({"answer": json.dumps(a)}) + "\n" for a in answers))
    run = CliRunner().invoke(app, ["evaluate", "--split", str(split), "--answers", str(path)])
    assert run.exit_code == 0, run.output
    metrics = json.loads((result.out_dir / "evaluations" / "ner-answers" / "metrics.json").read_text())
    assert metrics["task"] == "ner" and metrics["entity_precision"] == pytest.approx(1.0)
    assert metrics["entity_recall"] == pytest.approx((n_entities - len(references[0])) / n_entities)
    assert (result.out_dir / "evaluations" / "ner-answers" / "per_label.png").exists()

    # the same project as CoNLL, scored from a tagger's file over its tokens: here one that tags nothing
    conll = run_export(ls_client, project.id, tmp_path / "ner-conll", ExportOptions("conll", fractions="0.5,0.25,0.25"),
                       data_dir=tmp_path / "data")
    split = conll.out_dir / "test.conll"
    untagged = tmp_path / "untagged.conll"
    untagged.write_text("".join(line.rsplit("\t", 1)[0] + "\tO\n" if line else "\n"
                                for line in split.read_text(encoding="utf-8").split("\n")[:-1]), encoding="utf-8")
    for answers, recall in ((split, 1.0), (untagged, 0.0)):
        run = CliRunner().invoke(app, ["evaluate", "--split", str(split), "--answers", str(answers)])
        assert run.exit_code == 0, run.output
        metrics = json.loads((conll.out_dir / "evaluations" / answers.stem / "metrics.json").read_text())
        assert metrics["task"] == "ner" and metrics["examples"] == len(references)
        assert metrics["entity_recall"] == pytest.approx(recall)
