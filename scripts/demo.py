"""`labelloop demo`: a real Label Studio on SQLite, the backend, llama.cpp's server with SmolLM2,
and three demo projects that go through the loop.

- Sentiment (classification): prelabels, ranking by uncertainty, a seed set of labels,
  retraining, and an export of the labels as validated OpenAI chat files.
- Supervised fine-tuning (LLM responses): ChatterBot prompts drafted by the local LLM, ranked by
  the model's own uncertainty, the least certain drafts reviewed (corrected where they miss the
  reference answer), and the reviewed pairs exported.
- Named entities (NER spans): WNUT tweets prelabelled zero-shot by spaCy's pipeline, the most
  informative annotated with their hidden spans, the tagger retrained, and a CoNLL export.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from labelloop.model.datasets import rotten_tomatoes
from labelloop.model.errors import LabelloopError

from . import projects
from .client import as_dict, connect
from .export import ExportOptions, run_export
from .rank import SAMPLING, VIEW_TITLE, rank_project
from .services import (LLM_MODEL_ALIAS, ServiceError, backend_service, label_studio_service, llm_service,
                       stored_credentials)

DEMO_TITLE = "labelloop demo: movie review sentiment"
LLM_DEMO_TITLE = "labelloop demo: supervised fine-tuning"
NER_DEMO_TITLE = "labelloop demo: named entities in tweets"


def run_demo(*, state_dir: Path, port: int, backend_port: int, n_tasks: int, seed_labels: int, wait: bool,
             llm_prompts: int = 36, ner_tweets: int = 60, console: Console | None = None) -> dict:
    """Start both services, build the demo project, print a summary; returns the summary."""
    console = console or Console()
    creds = stored_credentials(state_dir)
    ls, creds = label_studio_service(state_dir / "label-studio", port=port, credentials=creds)
    llm = None
    if llm_prompts > 0:
        try:
            llm = llm_service(state_dir / "llama.log")
        except ServiceError as exc:
            console.print(f"[yellow]no LLM demo project:[/] {exc}")
    # ChatterBot answers are a sentence or two: a shorter cap than the product's 256 keeps the demo quick
    llm_env = {"LABELLOOP_LLM_BASE_URL": f"{llm.url}/v1", "LABELLOOP_LLM_MODEL": LLM_MODEL_ALIAS,
               "LABELLOOP_LLM_MAX_TOKENS": os.environ.get("LABELLOOP_LLM_MAX_TOKENS") or "96"} if llm else {}
    # the demo annotates a few dozen tweets: the tagger starts from 10 of them (the product waits for 20)
    backend = backend_service(state_dir / "models", port=backend_port, log_path=state_dir / "backend.log",
                              extra_env={"LABEL_STUDIO_URL": ls.url, "LABEL_STUDIO_API_KEY": creds.token,
                                         "LABELLOOP_NER_MIN_SENTENCES": "10", **llm_env})
    try:
        first = not (state_dir / "label-studio" / "label_studio.sqlite3").exists()
        with console.status(f"Starting Label Studio on {ls.url}"
                            + (" (first start runs migrations: about 30 s)" if first else "")):
            ls.start()
        if llm is not None:
            with console.status(f"Starting llama.cpp's server with SmolLM2-135M-Instruct on {llm.url}"):
                llm.start(timeout=120)
        with console.status(f"Starting the labelloop backend on {backend.url}"):
            backend.start()
        client = connect(ls.url, creds.token)
        summary = build_demo_project(client, backend.url, n_tasks=n_tasks, console=console)
        summary.update(rank_and_learn(client, summary["project_id"], seed_labels=seed_labels, console=console))
        summary.update(export_labels(client, summary["project_id"], state_dir, console=console))
        if ner_tweets > 0:
            summary["ner"] = run_ner_demo(client, backend.url, state_dir, n_tweets=ner_tweets,
                                          annotated=max(10, ner_tweets // 2), console=console)
        if llm is not None:
            summary["llm"] = run_llm_demo(client, backend.url, state_dir, llm_env, n_prompts=llm_prompts,
                                          reviewed=min(14, llm_prompts), console=console)
        console.print(f"\n[bold green]Label Studio is running:[/] {ls.url}/projects/{summary['project_id']}")
        if summary.get("ner"):
            console.print(f"  NER project: {ls.url}/projects/{summary['ner']['project_id']}")
        if summary.get("llm"):
            console.print(f"  LLM project: {ls.url}/projects/{summary['llm']['project_id']}  "
                          f"(llama.cpp server: {llm.url}/v1)")
        console.print(f"  login: [bold]{creds.username}[/]  password: [bold]{creds.password}[/]")
        console.print(f"  API key (LABEL_STUDIO_API_KEY): {creds.token}")
        console.print(f"  backend: {backend.url}   logs: {state_dir}")
        if wait:
            console.print("\nPress Ctrl-C to stop both services.")
            while True:
                time.sleep(1)
                if any(s.process.poll() is not None for s in (ls, backend, llm) if s is not None):
                    console.print("[red]a service stopped unexpectedly; see the logs above[/]")
                    break
        return summary
    except KeyboardInterrupt:
        console.print("\nStopping...")
        return {}
    finally:
        backend.stop()
        if llm is not None:
            llm.stop()
        ls.stop()
        console.print("Label Studio, the backend and the LLM server are stopped.")


def build_demo_project(client, backend_url: str, *, n_tasks: int, console: Console) -> dict:
    """Create the demo project (replacing an earlier one), import snippets, fetch prelabels."""
    for old in client.projects.list():
        if old.title == DEMO_TITLE:
            client.projects.delete(id=old.id)
    items = rotten_tomatoes(n_tasks, seed=0)
    project = projects.create_project(client, DEMO_TITLE, "text_classification",
                                      description="Rotten Tomatoes snippets, prelabelled by labelloop")
    # the true label rides along as hidden data, so the demo can report prelabel accuracy
    projects.import_tasks(client, project.id, ({"text": it.text, "true_label": it.label} for it in items))
    with console.status("Connecting the backend and retrieving prelabels"):
        projects.connect_backend(client, project.id, backend_url)
        projects.retrieve_predictions(client, project.id)
    tasks = list(projects.iter_tasks(client, project.id))
    rows = []
    for task in tasks:
        if not task.predictions:
            continue
        pred = as_dict(task.predictions[0])
        label = pred["result"][0]["value"]["choices"][0] if pred["result"] else None
        rows.append((task.id, task.data["text"], task.data["true_label"], label, pred["score"],
                     pred["model_version"]))
    correct = sum(r[2] == r[3] for r in rows)
    console.print(f"{len(rows)}/{len(tasks)} tasks prelabelled by {', '.join(sorted({r[5] for r in rows}))}; "
                  f"zero-shot agreement with the hidden labels: {correct / max(1, len(rows)):.0%}")
    table = Table(title="Most informative prelabels (lowest score: what an annotator should see first)")
    for col in ("task", "text", "prelabel", "score"):
        table.add_column(col)
    for r in sorted(rows, key=lambda r: r[4])[:5]:
        table.add_row(str(r[0]), r[1][:70], str(r[3]), f"{r[4]:.3f}")
    console.print(table)
    return {
        "project_id": project.id,
        "tasks": len(tasks),
        "predicted": len(rows),
        "model_versions": sorted({r[5] for r in rows}),
        "zero_shot_accuracy": correct / len(rows) if rows else 0.0,
    }


def rank_and_learn(client, project_id: int, *, seed_labels: int, console: Console) -> dict:
    """Turn on uncertainty sampling, then label a seed set with the hidden labels and watch the
    backend retrain from the webhooks."""
    with console.status("Ranking: uncertainty sampling, fresh scored predictions, a saved view"):
        report = rank_project(client, project_id, timeout=300)
    console.print(f"Label stream: '{SAMPLING}' over {report.current} tasks; saved view '{VIEW_TITLE}'")
    if seed_labels <= 0:
        return {"model_version": report.model_version}
    view_tasks = list(client.tasks.list(project=project_id, view=report.view_id, page_size=seed_labels))
    seed = view_tasks[:seed_labels]
    for task in seed:
        client.annotations.create(id=task.id, result=[{
            "from_name": "sentiment", "to_name": "text", "type": "choices",
            "value": {"choices": [task.data["true_label"]]}}])
    with console.status(f"Annotated the {len(seed)} most informative tasks; the backend retrains"):
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            version = client.projects.get(id=project_id).model_version or ""
            unlabelled = [t for t in projects.iter_tasks(client, project_id) if not t.annotations]
            current = [t for t in unlabelled
                       if any(as_dict(p)["model_version"] == version for p in t.predictions)]
            if version.startswith("labelloop-v") and len(current) == len(unlabelled):
                break
            time.sleep(1)
        else:
            console.print("[yellow]the backend has not refreshed yet; see the backend log[/]")
            return {"model_version": version}
    correct = sum(as_dict(t.predictions[0])["result"][0]["value"]["choices"][0] == t.data["true_label"]
                  for t in current if as_dict(t.predictions[0])["result"])
    accuracy = correct / max(1, len(current))
    console.print(f"Retrained from {len(seed)} labels: {version} serves; agreement on the "
                  f"{len(current)} unlabelled tasks: {accuracy:.0%}")
    return {"model_version": version, "trained_accuracy": accuracy}


def export_labels(client, project_id: int, state_dir: Path, *, console: Console) -> dict:
    """`labelloop export --format openai-chat` of the demo's labels into ``state_dir/export``."""
    out = state_dir / "export"
    try:
        with console.status("Exporting the labels as OpenAI chat files"):
            result = run_export(client, project_id, out, ExportOptions("openai-chat", overwrite=True),
                                data_dir=state_dir / "data")
    except LabelloopError as exc:  # e.g. too few labels for a valid training file
        console.print(f"[yellow]export skipped:[/] {exc}")
        return {}
    counts = {name: c["examples"] for name, c in result.manifest["counts"].items()}
    console.print(f"Exported to {out}: {', '.join(f'{n} {k}' for k, n in counts.items())} examples, validated; "
                  f"see manifest.json")
    return {"export": str(out), "export_counts": counts}


def run_llm_demo(client, backend_url: str, state_dir: Path, llm_env: dict, *, n_prompts: int = 36,
                 reviewed: int = 14, console: Console) -> dict:
    """Draft, rank, review and export an SFT project of ChatterBot prompts.

    The demo reviewer works down the label stream (least certain draft first): a draft close to
    the reference answer (cosine >= 0.8) is kept, any other is corrected to the reference.
    ``reviewed`` answers are enough for a valid training file (10 examples at least).
    """
    import numpy as np

    from labelloop.backend.config import Settings
    from labelloop.model.datasets import chatterbot_conversations
    from labelloop.model.embeddings import get_embedder
    from rich.progress import Progress

    from .prelabel import prelabel_project

    for old in client.projects.list():
        if old.title == LLM_DEMO_TITLE:
            client.projects.delete(id=old.id)
    references: dict[str, str] = {}
    for _, prompt, response in chatterbot_conversations():
        if len(prompt.split()) >= 3:
            references.setdefault(prompt, response)
    pairs = list(references.items())[:n_prompts]
    project = projects.create_project(client, LLM_DEMO_TITLE, "llm_fine_tuning",
                                      description="ChatterBot prompts, drafted by SmolLM2 through labelloop")
    projects.import_tasks(client, project.id, ({"prompt": p} for p, _ in pairs))
    projects.connect_backend(client, project.id, backend_url)

    os.environ.update(llm_env)  # `labelloop prelabel` reads the same settings as the backend
    settings = Settings.from_env(model_dir=str(state_dir / "models"))
    with Progress(console=console, transient=True) as progress:
        def bar(total):
            task = progress.add_task("drafting answers with SmolLM2", total=total)
            return lambda n: progress.advance(task, n)

        report = prelabel_project(client, project.id, settings=settings, progress=bar)
    console.print(f"LLM project: {report.imported} drafts of {report.model_version} imported "
                  f"({report.new_drafts} drafted now)")
    with console.status("Ranking the drafts: least certain first"):
        ranked = rank_project(client, project.id, timeout=300)
    queue = list(client.tasks.list(project=project.id, view=ranked.view_id, page_size=reviewed))[:reviewed]
    embed = get_embedder().embed
    kept = corrected = 0
    table = Table(title="The least certain drafts, as the reviewer found them")
    for col in ("score", "prompt", "draft", "review"):
        table.add_column(col)
    for task in queue:
        prediction = next(as_dict(p) for p in client.predictions.list(task=task.id)
                          if as_dict(p)["model_version"] == ranked.model_version)
        draft = prediction["result"][0]["value"]["text"][0] if prediction["result"] else ""
        reference = references[task.data["prompt"]]
        close = bool(draft) and float(np.dot(*embed([draft, reference]))) >= 0.8
        answer = draft if close else reference
        kept, corrected = kept + close, corrected + (not close)
        client.annotations.create(id=task.id, result=[{"from_name": "response", "to_name": "prompt",
                                                       "type": "textarea", "value": {"text": [answer]}}])
        if len(table.rows) < 5:
            table.add_row(f"{prediction['score']:.2f}", task.data["prompt"][:40], draft[:50],
                          "kept" if close else f"corrected: {reference[:40]}")
    console.print(table)
    out = state_dir / "export-llm"
    try:
        with console.status("Exporting the reviewed pairs as OpenAI chat files"):
            result = run_export(client, project.id, out, ExportOptions("openai-chat", overwrite=True),
                                data_dir=state_dir / "data")
        counts = {name: c["examples"] for name, c in result.manifest["counts"].items()}
        console.print(f"Reviewed {len(queue)} drafts ({kept} kept, {corrected} corrected); exported to {out}: "
                      f"{', '.join(f'{n} {k}' for k, n in counts.items())} examples, validated")
    except LabelloopError as exc:
        console.print(f"[yellow]LLM export skipped:[/] {exc}")
        counts = {}
    return {"project_id": project.id, "model_version": report.model_version, "drafted": report.imported,
            "kept": kept, "corrected": corrected, "export_counts": counts}


def _span_agreement(client, project_id: int, tasks, version: str) -> tuple[float, float, int]:
    """Precision and recall of the current prelabels (exact span and label) against the hidden
    spans of ``tasks``, and how many tasks carry ``version``."""
    from labelloop.label_config import load
    from labelloop.label_config.regions import labelled_spans
    from labelloop.label_config.spec import parse_label_config

    spec = parse_label_config(load("ner"))
    predicted = truth = hits = current = 0
    for task in tasks:
        predictions = [as_dict(p) for p in client.predictions.list(task=task.id)]
        mine = [p for p in predictions if p["model_version"] == version]
        if not mine:
            continue
        current += 1
        spans = set(labelled_spans(mine[0]["result"], spec, task.data["text"]))
        gold = {tuple(s) for s in task.data["true_spans"]}
        predicted, truth, hits = predicted + len(spans), truth + len(gold), hits + len(spans & gold)
    return hits / max(1, predicted), hits / max(1, truth), current


def run_ner_demo(client, backend_url: str, state_dir: Path, *, n_tweets: int = 60, annotated: int = 30,
                 console: Console) -> dict:
    """Prelabel, rank, annotate (with the hidden spans), retrain and export an NER project of WNUT tweets."""
    from labelloop.label_config import load
    from labelloop.label_config.regions import span_result
    from labelloop.label_config.spec import parse_label_config
    from labelloop.model.datasets import wnut_entities

    for old in client.projects.list():
        if old.title == NER_DEMO_TITLE:
            client.projects.delete(id=old.id)
    spec = parse_label_config(load("ner"))
    tweets = [s for s in wnut_entities(n_tweets * 4) if s[1]][:n_tweets]
    project = projects.create_project(client, NER_DEMO_TITLE, "ner",
                                      description="WNUT-16 tweets, prelabelled by spaCy and labelloop's tagger")
    projects.import_tasks(client, project.id, ({"text": t, "true_spans": [list(s) for s in spans]}
                                               for t, spans in tweets))
    projects.connect_backend(client, project.id, backend_url)
    with console.status("NER: zero-shot prelabels (spaCy's pipeline), ranked by the least confident span"):
        ranked = rank_project(client, project.id, timeout=300)
    tasks = list(projects.iter_tasks(client, project.id))
    precision, recall, _ = _span_agreement(client, project.id, tasks, ranked.model_version)
    console.print(f"NER project: {len(tasks)} tweets prelabelled by {ranked.model_version}; exact spans against the "
                  f"hidden ones: precision {precision:.0%}, recall {recall:.0%}")
    queue = list(client.tasks.list(project=project.id, view=ranked.view_id, page_size=annotated))[:annotated]
    for task in queue:
        text = task.data["text"]
        client.annotations.create(id=task.id, result=[span_result(spec, text, s, e, label, region_id=f"s{i}")
                                                      for i, (s, e, label) in enumerate(task.data["true_spans"])])
    done = {t.id for t in queue}
    rest = [t for t in tasks if t.id not in done]
    with console.status(f"Annotated the {len(queue)} most informative tweets; the tagger trains"):
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            version = client.projects.get(id=project.id).model_version or ""
            if version.startswith("labelloop-v") and _span_agreement(client, project.id, rest, version)[2] == len(rest):
                break
            time.sleep(1)
        else:
            console.print("[yellow]the NER backend has not refreshed yet; see the backend log[/]")
            return {"project_id": project.id, "model_version": version}
    trained_precision, trained_recall, _ = _span_agreement(client, project.id, rest, version)
    console.print(f"NER retrained from {len(queue)} tweets: {version} serves; on the {len(rest)} others: precision "
                  f"{trained_precision:.0%}, recall {trained_recall:.0%}")
    out = state_dir / "export-ner"
    counts = {}
    try:
        with console.status("Exporting the annotated tweets as CoNLL"):
            result = run_export(client, project.id, out, ExportOptions("conll", overwrite=True),
                                data_dir=state_dir / "data")
        counts = {name: c["examples"] for name, c in result.manifest["counts"].items()}
        console.print(f"NER export to {out}: {', '.join(f'{n} {k}' for k, n in counts.items())} tweets, validated")
    except LabelloopError as exc:
        console.print(f"[yellow]NER export skipped:[/] {exc}")
    return {"project_id": project.id, "model_version": version, "zero_shot": [precision, recall],
            "trained": [trained_precision, trained_recall], "export_counts": counts}
