"""`labelloop audit`: sync, the project kind's checks, a report, and review in Label Studio.

The checks themselves are the kind's (`labelloop.kinds`; for classification,
`labelloop.model.classification.audit`): consensus, Cleanlab label-error detection,
near-duplicates and outliers. This module pulls, writes the report and pushes the findings.

Findings meant for review (``review`` True; for classification, everything but near-duplicates
that agree and outliers, which stay in the report) go back as predictions under their own model
version (``labelloop-audit-<time>``), holding the suggested label with ``score`` = label quality,
plus a saved view "Suspected label errors" that serves them worst first. Label Studio sorts a
view by prediction score only over the project's model version (the served model's), so the
queue's order travels as a position in each queued task's data (`ORDER_KEY`). Annotations are
only read, never written: reviewers correct them in Label Studio, and the next audit sees the
corrections. A task that someone annotated again (an annotation added or updated) after an audit
queued it has been reviewed: later audits keep its findings in the report but do not queue it
again, so a reviewer who kept a label is not asked twice. Label Studio holds that history (the
audit's predictions and the annotations' times), so it needs no local state.

`watch_audit` (``labelloop audit --watch``) runs the audit again each time a share of its queue
has been reviewed: with the corrections in, the next queue holds more real errors
(``bench/outcome.py --refreshes``).
"""
from __future__ import annotations

import html
import json
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from labelloop.kinds import KindNotSupported, parse as parse_config
from labelloop.kinds.base import for_review, held_back, review_queue
from labelloop.label_config.spec import UnsupportedLabelConfig
from labelloop.model.classification.audit import label_value
from labelloop.model.embeddings import get_embedder
from labelloop.model.errors import LabelloopError, NotEnoughLabelsError
from labelloop.model.export.examples import changed_since
from labelloop.model.plots import confusion_heatmap
from labelloop.model.store import atomic_write_text

from .client import LabelStudioUnavailable, task_url
from .filters import has_model_version, save_view
from .predictions import push_predictions
from .sync import ProjectSnapshot

logger = logging.getLogger(__name__)

VIEW_TITLE = "Suspected label errors"
#: the task data key whose value orders the review view (1: review first). Label Studio 1.23 sorts
#: a view by prediction score averaged over the project's model version only, so a view sorted by
#: the audit's scores came out in the served model's order, or by task id where none is set
ORDER_KEY = "labelloop_review_order"
#: the Data Manager column of that key, which the view sorts by as a number
ORDER_COLUMN = f"tasks:data.{ORDER_KEY}"
#: queued tasks that get a position: each costs two requests; the rest follow in task order
MAX_ORDERED = 1000
#: the model version of the audit's predictions starts with this
VERSION_PREFIX = "labelloop-audit-"
#: findings listed in report.html (all are in findings.jsonl)
REPORT_ROWS = 500
#: characters of a task's text shown beside its finding
SNIPPET_CHARS = 160
#: `watch_audit` runs the audit again once this share of its queue has been reviewed
RERUN_SHARE = 0.25
#: ... and never after fewer reviewed tasks than this
RERUN_MIN = 5


@dataclass
class AuditReport:
    project_id: int
    model_version: str
    n_labelled: int
    findings: list[dict]
    messages: list[str] = field(default_factory=list)
    report_dir: Path | None = None
    view_id: int | None = None
    task_ids: list = field(default_factory=list)
    created_at: str = ""
    #: per task id of the first REPORT_ROWS findings: (text snippet, address in Label Studio)
    task_links: dict = field(default_factory=dict)


def run_audit(client, project_id: int, *, out_dir: Path, model_name: str = "default", n_folds: int | None = None,
              push: bool = True, full: bool = False, progress=None, judge=None) -> AuditReport:
    """Sync, consensus, detection, report and (``push``) review in Label Studio.

    ``judge``: an `labelloop.model.responses.llm.LLMConfig` whose endpoint scores LLM answers
    with a rubric (LLM projects only), or None.
    ``progress(step, total)``, if given, returns a callback that advances that step's bar.
    ``full`` pulls the whole project again instead of what changed since the last sync.
    ``n_folds``: cross-validation folds; None leaves the project kind's own default.
    """
    snapshot = ProjectSnapshot.in_data_dir(out_dir, project_id)
    snapshot.sync(client, full=full, progress=progress("pulling tasks", None) if progress else None)
    try:
        spec, kind = parse_config(snapshot.state()["label_config"])
    except UnsupportedLabelConfig as exc:
        raise LabelloopError(f"project {project_id} cannot be audited: {exc}") from None

    def embed(texts):
        return get_embedder(model_name).embed(texts, progress=progress("embedding texts", len(texts))
                                              if progress else None)

    try:
        rubric = None
        if judge is not None:
            from labelloop.model.responses.llm import Drafter

            rubric = Drafter(judge).judge
        folds = {} if n_folds is None else {"n_folds": n_folds}
        audit = kind.audit(snapshot.tasks(), spec, embed=embed, progress=progress, judge=rubric, **folds)
    except KindNotSupported as exc:
        raise LabelloopError(f"project {project_id} cannot be audited: {exc}") from None
    except NotEnoughLabelsError as exc:
        raise NotEnoughLabelsError(f"project {project_id}: {exc}") from None
    version = f"{VERSION_PREFIX}{time.strftime('%Y%m%d-%H%M%S')}"
    tasks = snapshot.tasks()
    findings = leave_reviewed_out(audit.findings, tasks, audit.messages)
    shown = {f["task_id"]: (snippet(_task_text(tasks.get(f["task_id"]), spec.text_key)),
                            task_url(client, project_id, f["task_id"])) for f in findings[:REPORT_ROWS]}
    report = AuditReport(project_id, version, len(audit.task_ids), findings, audit.messages, task_ids=audit.task_ids,
                         created_at=datetime.now(timezone.utc).isoformat(), task_links=shown)
    report.report_dir = write_report(out_dir / f"audit-{project_id}-{version.removeprefix('labelloop-audit-')}",
                                     report, audit)
    if push:
        report.view_id = push_review_queue(client, project_id, review_queue(findings), tasks=tasks, kind=kind,
                                           spec=spec, version=version, progress=progress)
    return report


def push_review_queue(client, project_id: int, queued: list[dict], *, tasks: dict, kind, spec, version: str,
                      progress=None) -> int:
    """Put ``queued`` (findings in review order) in Label Studio as the view `VIEW_TITLE`: one
    prediction of ``version`` per task with the suggested label, each task's position under
    `ORDER_KEY`, and the view filtered to ``version``. An empty queue empties the view and
    removes every position, so no earlier audit's tasks stay in it. Returns the view's id."""
    def suggestion(f):
        if "value" in f:  # what the kind's regions take (NER: the text and the suggested spans)
            return kind.regions(spec, f["value"])
        labels = f["suggested"] if isinstance(f["suggested"], list) else [f["suggested"]]
        return kind.regions(spec, labels) if f["suggested"] else []

    if queued:
        push_predictions(client, project_id, [{"task": f["task_id"], "model_version": version, "score": f["quality"],
                                               "result": suggestion(f)} for f in queued])
    changes = review_order_changes(tasks, [f["task_id"] for f in queued])
    write_review_order(client, changes,
                       progress=progress("ordering the review queue", len(changes)) if progress else None)
    # the tasks flagged by this audit, worst first, given labels beside suggestions; no score
    # column: Label Studio would average the served model's scores there, not the audit's
    return save_view(client, project_id, VIEW_TITLE, [has_model_version(version)], [ORDER_COLUMN],
                     numeric=(ORDER_COLUMN,), columns=("id", "annotators", "annotations_results", "predictions_results"))


def review_order_changes(tasks: dict, queued_ids: list) -> list[tuple[int, int | None]]:
    """``[(task id, position or None), ...]``: what `write_review_order` writes so that the first
    `MAX_ORDERED` of ``queued_ids`` (review order) hold their position from 1 under `ORDER_KEY`
    and no other task of ``tasks`` (the snapshot's task JSON) holds one (None: remove it). Tasks
    whose data already says so are left out."""
    wanted = {int(t): i + 1 for i, t in enumerate(queued_ids[:MAX_ORDERED])}

    def current(task_id):
        data = (tasks.get(task_id) or {}).get("data")
        return data.get(ORDER_KEY) if isinstance(data, dict) else None

    changes = [(t, position) for t, position in wanted.items() if current(t) != position]
    return changes + [(t, None) for t in tasks if t not in wanted and current(t) is not None]


def write_review_order(client, changes: list[tuple[int, int | None]], *, workers: int = 4,
                       progress: Callable[[int], None] | None = None) -> int:
    """Apply `review_order_changes` to the tasks' data in Label Studio. Each task is read again
    just before its write, so data changed since the sync is kept; a task deleted since is
    skipped. Returns how many tasks were written."""
    from label_studio_sdk.core.api_error import ApiError

    def write(change) -> int:
        task_id, position = change
        try:
            data = dict(client.tasks.get(id=task_id).data or {})
        except ApiError as exc:
            if exc.status_code == 404:
                return 0
            raise
        if position is None:
            data.pop(ORDER_KEY, None)
        else:
            data[ORDER_KEY] = position
        client.tasks.update(id=task_id, data=data)
        if progress is not None:
            progress(1)
        return 1

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return sum(pool.map(write, changes))


def reviewed_tasks(tasks: dict) -> dict:
    """``{task id: model version}`` of the tasks that were annotated again (an annotation added or
    updated) after the audit of that version first queued them. ``tasks``: task JSON with its
    predictions, as the snapshot keeps it (a task annotated again is pulled again, predictions
    and all)."""
    reviewed = {}
    for task_id, task in tasks.items():
        queued = [p for p in task.get("predictions") or ()
                  if isinstance(p, dict) and str(p.get("model_version") or "").startswith(VERSION_PREFIX)
                  and p.get("created_at")]
        if queued:
            first = min(queued, key=lambda p: str(p["created_at"]))
            if changed_since(task, str(first["created_at"])):
                reviewed[task_id] = first["model_version"]
    return reviewed


def leave_reviewed_out(findings: list[dict], tasks: dict, messages: list[str]) -> list[dict]:
    """``findings`` with those of `reviewed_tasks` kept for the report but out of the review
    queue (``review`` False, ``reviewed_after`` the audit that queued the task), queue first."""
    reviewed = reviewed_tasks(tasks)
    n = 0
    for finding in findings:
        version = reviewed.get(finding["task_id"])
        if version is not None and for_review(finding):
            finding.update(review=False, reviewed_after=version,
                           reason=f"{finding['reason']}; annotated again after {version} queued it, not queued again")
            n += 1
    if n:
        messages.append(f"{n} finding(s) on tasks annotated again after an earlier audit queued them: "
                        "in the report, not queued again")
    return review_queue(findings) + [f for f in findings if not for_review(f)]  # the report in the view's order


def rerun_after(n_queued: int, *, share: float = RERUN_SHARE, minimum: int = RERUN_MIN) -> int:
    """Reviewed tasks after which `watch_audit` runs the audit again, for a queue of ``n_queued``:
    ``share`` of it, at least ``minimum``, at most all of it."""
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], got {share}")
    return min(n_queued, max(minimum, math.ceil(share * n_queued)))


def review_progress(tasks: dict, report: AuditReport) -> tuple[int, int]:
    """(tasks queued by ``report`` that have been reviewed since, those of its queued tasks that
    still exist). ``tasks``: task JSON with predictions, as the snapshot keeps it (the rule of
    `reviewed_tasks`)."""
    queued = {t: tasks[t] for f in report.findings if for_review(f) and (t := f["task_id"]) in tasks}
    return len(reviewed_tasks(queued)), len(queued)


def watch_audit(client, project_id: int, *, out_dir: Path, every: int | None = None, poll_s: float = 30.0,
                max_audits: int | None = None, on_report: Callable | None = None,
                on_poll: Callable | None = None, sleep: Callable = time.sleep, **audit_options) -> AuditReport:
    """`run_audit`, then again each time ``every`` of its queued tasks have been reviewed
    (default `rerun_after` of the queue), until an audit queues no likely error (`held_back`: for
    classification, what is left are labels the model doubts past Cleanlab's estimate of the
    errors, which on ambiguous data never runs out) or ``max_audits`` ran.

    Every ``poll_s`` seconds it pulls what changed (the snapshot's incremental sync) and counts
    the reviewed tasks. ``on_report(report)`` follows each audit, ``on_poll(reviewed, due,
    queued)`` each poll. Returns the last report; the CLI stops it with Ctrl-C.
    """
    if every is not None and every < 1:
        raise ValueError(f"every must be at least 1, got {every}")
    if not audit_options.get("push", True):
        raise ValueError("watching needs the queue in Label Studio (push): reviews are read from there")
    snapshot = ProjectSnapshot.in_data_dir(out_dir, project_id)
    audits = 0
    while True:
        try:
            report = run_audit(client, project_id, out_dir=out_dir, **audit_options)
        except LabelStudioUnavailable as exc:
            if not audits:
                raise
            logger.warning("auditing again: %s; trying again in %.0f s", exc, poll_s)
            sleep(poll_s)
            continue
        audits += 1
        if on_report is not None:
            on_report(report)
        n_queued = sum(map(for_review, report.findings))
        if not any(map(held_back, report.findings)) or (max_audits is not None and audits >= max_audits):
            return report
        due = min(n_queued, every) if every is not None else rerun_after(n_queued)
        while True:
            sleep(poll_s)
            try:
                snapshot.sync(client)
            except LabelStudioUnavailable as exc:  # a blip must not end a long watch: ask again later
                logger.warning("checking for reviews: %s; trying again in %.0f s", exc, poll_s)
                continue
            reviewed, present = review_progress(snapshot.tasks(), report)
            if on_poll is not None:
                on_poll(reviewed, due, n_queued)
            if reviewed >= min(due, present):  # deleted tasks cannot be reviewed any more
                break
        audit_options["full"] = False  # the next audits pull only what changed


def write_report(directory: Path, report: AuditReport, audit) -> Path:
    """findings.jsonl, consensus.jsonl, summary.json, PNG plots and report.html in ``directory``.

    ``audit`` is the kind's result: a classification `LabelAudit`, an LLM `ResponseAudit` or an
    NER `SpanAudit`; the plots that suit it are drawn.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from labelloop.model.responses.audit import ResponseAudit
    from labelloop.model.spans.label_issues import SpanAudit

    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_text(directory / "findings.jsonl", "".join(json.dumps(f) + "\n" for f in report.findings))
    plots = []

    def save(fig, name, title):
        fig.tight_layout()
        fig.savefig(directory / name, dpi=100)
        plt.close(fig)
        plots.append((name, title))

    kinds, kind_counts = np.unique([k for f in report.findings for k in f["issues"]], return_counts=True)
    consensus_value = label_value
    sources = ""
    if isinstance(audit, ResponseAudit):
        _response_plots(audit, save, plt)
        consensus_labels = []  # a response has no label to agree on
    elif isinstance(audit, SpanAudit):
        _span_plots(audit, save, plt)
        consensus_labels, consensus_value = audit.consensus, (lambda spans: [list(s) for s in spans])
        atomic_write_text(directory / "sources.json", json.dumps(audit.report, indent=2))
        sources = _sources_table(audit.report)
    else:
        _classification_plots(audit, save, plt)
        consensus_labels = audit.consensus
    if len(kinds):
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.barh(kinds, kind_counts)
        ax.set_xlabel("tasks")
        save(fig, "findings_by_kind.png", "Findings by kind")

    atomic_write_text(directory / "consensus.jsonl", "".join(
        json.dumps({"task_id": task_id, "label": consensus_value(label)}) + "\n"
        for task_id, label in zip(report.task_ids, consensus_labels)))
    summary = {"project_id": report.project_id, "model_version": report.model_version,
               "created_at": report.created_at,
               "labelled_tasks": report.n_labelled, "findings": len(report.findings),
               "in_review_queue": sum(map(for_review, report.findings)),
               # what export --exclude-flagged holds back until reviewed
               "likely_errors_in_queue": sum(map(held_back, report.findings)),
               "findings_by_kind": dict(zip(kinds.tolist(), kind_counts.tolist())), "messages": report.messages}
    atomic_write_text(directory / "summary.json", json.dumps(summary, indent=2))

    def task_cells(task_id):
        text, url = report.task_links.get(task_id, ("", ""))
        link = f"<a href='{html.escape(url)}'>{task_id}</a>" if url else str(task_id)
        return f"<td>{link}</td><td>{html.escape(text)}</td>"

    rows = "".join(f"<tr>{task_cells(f['task_id'])}<td>{html.escape(str(f['given']))}</td>"
                   f"<td>{html.escape(str(f['suggested']))}</td><td>{f['quality']:.3f}</td>"
                   f"<td>{_queue_cell(f)}</td>"
                   f"<td>{html.escape(f['reason'])}</td></tr>" for f in report.findings[:REPORT_ROWS])
    images = "".join(f"<h2>{html.escape(t)}</h2><img src='{n}'>" for n, t in plots)
    notes = "".join(f"<li>{html.escape(m)}</li>" for m in report.messages)
    atomic_write_text(directory / "report.html", f"""<!doctype html><meta charset="utf-8">
<title>labelloop audit, project {report.project_id}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}td,th{{padding:2px 8px}}</style>
<h1>Audit of project {report.project_id}</h1>
<p>{report.n_labelled} labelled tasks, {len(report.findings)} findings, model version
<code>{report.model_version}</code>.</p><ul>{notes}</ul>{sources}{images}
<h2>Findings (review queue first, worst first)</h2><p>A task's number opens it in Label Studio.</p>
<table><tr><th>task</th><th>text</th><th>given</th><th>suggested</th>
<th>quality</th><th>in review queue</th><th>reason</th></tr>{rows}</table>""")
    return directory


def _queue_cell(finding: dict) -> str:
    """The report's "in review queue" cell: a queued label past Cleanlab's estimate is only a possible error."""
    if not for_review(finding):
        return "no"
    if "likely_error" not in finding:  # kinds without an estimate queue only what they are sure of
        return "yes"
    return "yes, likely error" if finding["likely_error"] else "yes, past the estimate"


def _task_text(task, key: str):
    data = task.get("data") if isinstance(task, dict) else None
    return data.get(key) if isinstance(data, dict) else None


def snippet(text, *, limit: int = SNIPPET_CHARS) -> str:
    """The start of a task's text on one line, cut at ``limit`` characters (any value: hostile data)."""
    text = " ".join(("" if text is None else str(text)).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _classification_plots(audit, save, plt) -> None:
    """Label distribution, label quality, given vs suggested labels, annotator quality."""
    given = [label for g in audit.consensus for label in (g if isinstance(g, tuple) else (g,))]
    labels, counts = np.unique(np.asarray(given, dtype=str), return_counts=True)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(labels, counts)
    ax.set_ylabel("tasks")
    save(fig, "label_distribution.png", "Label distribution (consensus)")

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(audit.issues.quality[audit.issues.scored], bins=30)
    likely = audit.issues.likely_errors()
    if audit.issues.n_estimated is not None and likely.any():  # the likely errors lie left of the line
        ax.axvline(audit.issues.quality[likely].max(), color="tab:red", linestyle="--",
                   label=f"Cleanlab's estimate: {int(likely.sum())} likely errors")
        ax.legend()
    ax.set_xlabel("label quality (lower is more suspicious)")
    save(fig, "quality_histogram.png", "Label quality scores")

    flagged = audit.issues.is_issue
    multi_label = any(isinstance(g, tuple) for g in audit.issues.given)
    if flagged.any() and not multi_label:  # a confusion matrix needs one label per task
        classes = list(audit.issues.classes)
        confusion = np.zeros((len(classes), len(classes)), dtype=int)
        for g, s in zip(audit.issues.given[flagged], audit.issues.suggested[flagged]):
            confusion[classes.index(g), classes.index(s)] += 1
        fig, ax = plt.subplots(figsize=(5, 4))
        confusion_heatmap(ax, confusion, classes, xlabel="suggested", ylabel="given")
        save(fig, "given_vs_suggested.png", "Flagged tasks: given vs suggested label")

    if audit.annotator_stats is not None:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.bar([str(a) for a in audit.annotator_stats.index], audit.annotator_stats["annotator_quality"])
        ax.set_ylabel("annotator quality (CROWDLAB)")
        save(fig, "annotator_quality.png", "Annotator quality")


def _response_plots(audit, save, plt) -> None:
    """Response lengths (the findings-by-kind chart is drawn for every kind)."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(np.log10(np.maximum(audit.response_chars, 1)), bins=30)
    ax.set_xlabel("response length (log10 characters)")
    ax.set_ylabel("tasks")
    save(fig, "response_lengths.png", "Response lengths")


def _span_plots(audit, save, plt) -> None:
    """Sentence label quality, and each span source's precision and recall per label."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(audit.quality, bins=30)
    ax.set_xlabel("sentence label quality (Cleanlab; lower is more suspicious)")
    save(fig, "quality_histogram.png", "Label quality scores")
    if not audit.report:
        return
    labels = [label for label in next(iter(audit.report.values())) if label != "all"]
    names = list(audit.report)
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.4 * len(labels) + 1.5), sharey=True)
    height = 0.8 / len(names)
    for ax, metric in zip(axes, ("precision", "recall")):
        for k, name in enumerate(names):
            ax.barh([i + k * height for i in range(len(labels))],
                    [audit.report[name][label][metric] for label in labels], height=height, label=name)
        ax.set_xlabel(metric)
        ax.set_xlim(0, 1)
    axes[0].set_yticks([i + 0.4 - height / 2 for i in range(len(labels))], labels)
    axes[1].legend(loc="lower right")
    save(fig, "sources.png", "Span sources against the annotators (per label)")


def _sources_table(report: dict) -> str:
    """An HTML table: each span source's precision / recall / F1 overall, against people's spans."""
    rows = "".join(f"<tr><td>{html.escape(name)}</td><td>{r['all']['precision']:.2f}</td><td>{r['all']['recall']:.2f}"
                   f"</td><td>{r['all']['f1']:.2f}</td><td>{r['all']['predicted']}</td></tr>"
                   for name, r in report.items())
    return ("<h2>Span sources against the annotators</h2><table><tr><th>source</th><th>precision</th><th>recall</th>"
            f"<th>F1</th><th>spans</th></tr>{rows}</table><p>Per label: sources.json and the chart below.</p>")
