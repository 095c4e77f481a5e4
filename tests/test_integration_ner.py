"""NER through the whole loop on a real Label Studio: zero-shot prelabels (pretrained pipeline and
a gazetteer file), annotations, retraining from webhooks, the new version serving, ranking, the
audit with its review view, and the CoNLL / JSON-spans export, with emoji before the spans (an
emoji is one code point but two UTF-16 units, so any unit mix-up shifts every later span)."""
import json
import os
import subprocess
import sys

import pytest

from labelloop.label_config import load
from labelloop.label_config.regions import span_result
from labelloop.label_config.spec import parse_label_config
from labelloop.model.datasets import wnut_entities
from labelloop.scripts import projects
from labelloop.scripts.audit import VIEW_TITLE as AUDIT_VIEW, run_audit
from labelloop.scripts.client import as_dict
from labelloop.scripts.export import ExportOptions, run_export
from labelloop.scripts.rank import rank_project

from conftest import wait_for

pytestmark = pytest.mark.integration

# characters outside the Basic Multilingual Plane before, between and inside the entities' neighbourhood
EMOJI_TEXTS = [
    ("🎉🎉 Barack Obama 😀 flew to London 🇬🇧 to meet Google 🚀 staff", [("Barack Obama", "person"),
                                                                     ("London", "location"), ("Google", "company")]),
    ("😂 my new iPhone 📱 from Apple is great 👍 says Taylor Swift", [("iPhone", "product"), ("Apple", "company"),
                                                                  ("Taylor Swift", "musicartist")]),
]


def drawn(text, start, end):
    """The characters Label Studio 1.23's labelling UI highlights for ``start``/``end``: it counts
    code points (checked in a browser by docs/screenshot_ner.py), not JavaScript's UTF-16 units."""
    return text[start:end]


def spans_of(text, named):
    return [(text.index(s), text.index(s) + len(s), label) for s, label in named]


def test_ner_loop_with_emoji_offsets(ls_client, label_studio, backend, tmp_path):
    spec = parse_label_config(load("ner"))
    sentences = [s for s in wnut_entities(600) if s[1]][:44]
    data = [(text, list(spans)) for text, spans in sentences] + [(t, spans_of(t, n)) for t, n in EMOJI_TEXTS]
    project = projects.create_project(ls_client, "ner loop", "ner")
    projects.import_tasks(ls_client, project.id, ({"text": text} for text, _ in data))
    tasks = sorted(projects.iter_tasks(ls_client, project.id), key=lambda t: t.id)
    truth = {t.id: spans for t, (_, spans) in zip(tasks, data)}
    emoji_ids = [t.id for t in tasks[-len(EMOJI_TEXTS):]]

    # a gazetteer file with a blank and a duplicate line, through the CLI
    names = tmp_path / "products.txt"
    names.write_text("iPhone\n\niPhone\nGalaxy S10\n", encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "labelloop.scripts.cli", "gazetteer", "--project", str(project.id),
                           "--label", "product", "--file", str(names), "--model-dir", str(backend.model_dir)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "LABEL_STUDIO_URL": label_studio.url,
                               "LABEL_STUDIO_API_KEY": label_studio.token, "COLUMNS": "200"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 entries (1 blank lines, 1 duplicate lines skipped)" in done.stdout

    projects.connect_backend(ls_client, project.id, backend.url)
    report = rank_project(ls_client, project.id, timeout=300)
    assert report.model_version.startswith("labelloop-ner-zeroshot-")
    assert report.current == report.unlabelled == len(data)

    def predictions(task_id):
        return [as_dict(p) for p in ls_client.tasks.get(id=task_id).predictions]

    for task_id, (text, _) in zip(emoji_ids, EMOJI_TEXTS):
        [prediction] = predictions(task_id)
        regions = prediction["result"]
        assert regions, f"no zero-shot span in {text!r}"
        for region in regions:
            value = region["value"]
            # the span Label Studio draws is exactly the characters the prediction names
            assert drawn(text, value["start"], value["end"]) == value["text"], (text, value)
            assert value["labels"][0] in spec.labels and isinstance(region["id"], str)
            assert 0.0 <= region["score"] <= 1.0
        assert 0.0 <= prediction["score"] <= 1.0
    iphone = [r for r in predictions(emoji_ids[1])[0]["result"] if r["value"]["text"] == "iPhone"]
    assert iphone and iphone[0]["value"]["labels"] == ["product"]  # the gazetteer's entry

    # annotate 30 tasks (both emoji texts among them); webhooks retrain
    labelled = tasks[:28] + tasks[-2:]
    # one planted error for the audit: the tweet's first word marked as a movie
    planted = next(t for t in labelled[:28] if all(s > 0 for s, _, _ in truth[t.id]))
    for task in labelled:
        text = task.data["text"]
        spans = truth[task.id] + ([(0, text.index(" "), "movie")] if task is planted else [])
        ls_client.annotations.create(id=task.id, result=[
            span_result(spec, text, s, e, label, region_id=f"r{i}") for i, (s, e, label) in enumerate(spans)])

    def trained():
        version = ls_client.projects.get(id=project.id).model_version or ""
        if not version.startswith("labelloop-v"):
            return None
        done = {t.id for t in labelled}
        # the list API: opening one task (tasks.get) while the refresh runs makes Label Studio
        # ask /predict for it, and the refresh then adds a second prediction of the same version
        current = {t.id: [as_dict(p) for p in t.predictions] for t in projects.iter_tasks(ls_client, project.id)
                   if t.id not in done}
        return version if all(len(p) == 1 and p[0]["model_version"] == version for p in current.values()) else None

    version = wait_for(trained, 300, "the trained NER version to serve every unlabelled task")
    scores = {p["score"] for t in tasks[28:-2] for p in predictions(t.id) if p["model_version"] == version}
    assert len(scores) > 3  # graded by the tagger, not a constant
    meta = json.loads((backend.model_dir / f"{project.id}.{int(project.created_at.timestamp())}" / "versions" /
                       version.split("-")[1] / "meta.json").read_text())
    assert meta["tagger"] and set(meta["sources"]) == {"pretrained", "gazetteer", "tagger"}
    assert meta["learned_entries"] > 20

    # rank again (a full retrain): a trained version serves every unlabelled task
    report = rank_project(ls_client, project.id, timeout=300)
    assert report.model_version.startswith("labelloop-v") and report.current == report.unlabelled == 16

    # audit: Cleanlab over out-of-fold word probabilities, findings pushed for review
    audit = run_audit(ls_client, project.id, out_dir=tmp_path / "audit", n_folds=3)
    assert audit.n_labelled == 30
    sources = json.loads((audit.report_dir / "sources.json").read_text())
    assert set(sources) == {"pretrained", "gazetteer", "tagger"} and "person" in sources["pretrained"]
    assert (audit.report_dir / "sources.png").exists() and (audit.report_dir / "consensus.jsonl").exists()
    flagged = {f["task_id"]: f for f in audit.findings}
    assert planted.id in flagged and "label_error" in flagged[planted.id]["issues"], audit.findings[:3]
    assert "movie: " + planted.data["text"].split()[0] in flagged[planted.id]["given"]
    views = [v for v in ls_client.views.list(project=project.id) if v.data.get("title") == AUDIT_VIEW]
    assert len(views) == 1
    pushed = [p for p in predictions(planted.id) if p["model_version"] == audit.model_version]
    assert pushed and pushed[0]["score"] == flagged[planted.id]["quality"]
    assert all(drawn(planted.data["text"], r["value"]["start"], r["value"]["end"]) == r["value"]["text"]
               for r in pushed[0]["result"])
    assert not any(r["value"]["labels"] == ["movie"] and r["value"]["start"] == 0 for r in pushed[0]["result"])
    # annotations are never touched
    for task in labelled:
        assert len(ls_client.tasks.get(id=task.id).annotations) == 1

    # export: CoNLL and JSON spans read the same UTF-16 offsets back to the same characters
    for fmt in ("conll", "openai-chat"):
        result = run_export(ls_client, project.id, tmp_path / fmt, ExportOptions(fmt), data_dir=tmp_path / "data")
        body = "\n".join(path.read_text(encoding="utf-8") for path in sorted(result.out_dir.glob("*.conll")) +
                         sorted(result.out_dir.glob("*.jsonl")))
        if fmt == "conll":
            assert "Obama\tI-person" in body and "Google\tB-company" in body
        else:
            rows = [json.loads(line) for line in body.splitlines() if line.strip()]
            emoji = [r for r in rows if "🚀" in r["messages"][-2]["content"]][0]
            answer = json.loads(emoji["messages"][-1]["content"])
            text = EMOJI_TEXTS[0][0]
            assert [(a["start"], a["end"], a["label"]) for a in answer] == spans_of(text, EMOJI_TEXTS[0][1])
            assert all(text[a["start"]:a["end"]] == a["text"] for a in answer)

