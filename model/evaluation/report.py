"""The evaluation's files: ``metrics.json``, PNG plots and ``report.html``, with earlier runs on
the same test split side by side."""
from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from ..plots import confusion_heatmap
from ..store import atomic_write_text

#: the headline numbers per kind, in the order the comparison shows them
HEADLINE = {
    "generation": ("bleu", "chrf", "rouge_l", "bertscore_f1", "meteor", "perplexity"),
    "classification": ("accuracy", "macro_f1", "unparsed_answers"),
    "ner": ("entity_precision", "entity_recall", "entity_f1"),
}


def headline(metrics: dict) -> dict:
    """``{name: number or None}`` of the run's headline metrics (None: unavailable)."""
    out = {}
    for name in HEADLINE[metrics["task"]]:
        value = metrics.get(name)
        if name == "perplexity" and isinstance(value, dict):
            value = value.get("perplexity")
        out[name] = float(value) if isinstance(value, (int, float)) else None
    return out


def earlier_runs(root: Path, split_sha256: str, *, exclude: Path) -> list[dict]:
    """``metrics.json`` of other runs under ``root`` on the same split file, oldest first."""
    runs = []
    for path in sorted(root.glob("*/metrics.json")):
        if path.parent.resolve() == exclude.resolve():
            continue
        try:
            metrics = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if metrics.get("split", {}).get("sha256") == split_sha256:
            runs.append(metrics)
    return sorted(runs, key=lambda m: m.get("created_at", ""))


def _plots(metrics: dict, runs: list[dict], directory: Path) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots = []

    def save(fig, name, title):
        fig.tight_layout()
        tmp = directory / f".{name}.tmp.png"
        fig.savefig(tmp, dpi=110)
        plt.close(fig)
        tmp.replace(directory / name)
        plots.append((name, title))

    if metrics["task"] == "classification":
        labels, matrix = metrics["confusion"]["labels"], np.array(metrics["confusion"]["matrix"])
        size = max(4.0, 0.5 * len(labels) + 2)
        fig, ax = plt.subplots(figsize=(size, size * 0.85))
        confusion_heatmap(ax, matrix, labels, xlabel="model's answer", ylabel="annotators' label")
        save(fig, "confusion_matrix.png", "Confusion matrix")
    if metrics["task"] in ("classification", "ner") and metrics.get("per_label"):
        names = list(metrics["per_label"])
        fig, ax = plt.subplots(figsize=(max(5.0, 0.6 * len(names) + 2), 3.5))
        x = np.arange(len(names))
        for offset, key in ((-0.27, "precision"), (0, "recall"), (0.27, "f1")):
            ax.bar(x + offset, [metrics["per_label"][n][key] for n in names], width=0.27, label=key)
        ax.set_xticks(x, names, rotation=30, ha="right")
        ax.set_ylim(0, 1)
        ax.legend()
        save(fig, "per_label.png", "Per label" + (" (entity level)" if metrics["task"] == "ner" else ""))
    per_example = metrics.get("per_example") or {}
    shown = [k for k in ("rouge_l", "bertscore_f1") if k in per_example]
    if shown:
        fig, axes = plt.subplots(1, len(shown), figsize=(4.5 * len(shown), 3.2), squeeze=False)
        for ax, key in zip(axes[0], shown):
            ax.hist(per_example[key], bins=20, range=(0, 1), color="tab:blue")
            ax.set_xlabel(key)
            ax.set_ylabel("examples")
        save(fig, "per_example.png", "Per-example scores")
    if runs:
        every = [*runs, metrics]
        names = [n for n in HEADLINE[metrics["task"]]
                 if n != "unparsed_answers" and any(headline(m).get(n) is not None for m in every)]
        fig, axes = plt.subplots(1, len(names), figsize=(2.6 * len(names), 3.2), squeeze=False)
        for ax, name in zip(axes[0], names):
            values = [headline(m).get(name) for m in every]
            ax.bar(range(len(every)), [v if v is not None else 0 for v in values],
                   color=["tab:gray"] * len(runs) + ["tab:blue"])
            ax.set_xticks(range(len(every)), [m["name"] for m in every], rotation=30, ha="right")
            ax.set_title(name + (" (lower is better)" if name == "perplexity" else ""))
        save(fig, "comparison.png", "This run (blue) against earlier runs on the same split")
    return plots


def _cell(value) -> str:
    if value is None:
        return "n/a"
    return f"{value:.4g}" if isinstance(value, float) else html.escape(str(value))


def write_report(directory: Path, metrics: dict, examples: Sequence[dict], runs: list[dict]) -> Path:
    """Writes ``metrics.json``, the plots and ``report.html`` into ``directory``; returns the report.

    ``examples``: ``{"prompt", "reference", "answer", "score"}`` per test example, shown worst
    first (lowest ``score``) in the report."""
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_text(directory / "metrics.json", json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")
    plots = _plots(metrics, runs, directory)
    every = [*runs, metrics]
    table = "<tr><th>metric</th>" + "".join(f"<th>{html.escape(m['name'])}</th>" for m in every) + "</tr>"
    for name in HEADLINE[metrics["task"]]:
        table += f"<tr><td>{name}</td>" + "".join(f"<td>{_cell(headline(m).get(name))}</td>" for m in every) + "</tr>"
    notes = "".join(f"<li>{html.escape(name)}: {html.escape(value['unavailable'])}</li>"
                    for name, value in metrics.items() if isinstance(value, dict) and "unavailable" in value)
    worst = sorted(examples, key=lambda e: e["score"])[:50]
    rows = "".join(f"<tr><td>{e['score']:.3f}</td><td>{html.escape(e['prompt'])}</td>"
                   f"<td>{html.escape(e['reference'])}</td><td>{html.escape(e['answer'])}</td></tr>" for e in worst)
    images = "".join(f"<h2>{html.escape(title)}</h2><img src='{name}'>" for name, title in plots)
    source = metrics["answers_from"]
    report = directory / "report.html"
    atomic_write_text(report, f"""<!doctype html><meta charset="utf-8">
<title>labelloop evaluate: {html.escape(metrics['name'])}</title>
<style>body{{font-family:sans-serif;margin:2em}} td,th{{border:1px solid #ccc;padding:4px;vertical-align:top;
white-space:pre-wrap}} table{{border-collapse:collapse}}</style>
<h1>{html.escape(metrics['name'])} on {html.escape(metrics['split']['path'])}</h1>
<p>{metrics['examples']} examples of a {html.escape(metrics['kind'])} project; answers from
{html.escape(source)}.</p>
<h2>Metrics{' (earlier runs on the same split to the left)' if runs else ''}</h2><table>{table}</table>
{f'<h2>Not computed</h2><ul>{notes}</ul>' if notes else ''}
{images}
<h2>Lowest-scoring examples</h2>
<table><tr><th>score</th><th>prompt</th><th>reference</th><th>answer</th></tr>{rows}</table>
""")
    return report
