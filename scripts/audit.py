"""`labelloop audit`: sync, consensus, Cleanlab label-error detection, a report, and review in Label Studio.

Findings go back as predictions under their own model version (``labelloop-audit-<time>``),
holding the suggested label with ``score`` = label quality, plus a saved view "Suspected label
errors". Annotations are only read, never written: reviewers correct them in Label Studio, and
the next audit sees the corrections.
"""
from __future__ import annotations

import html
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from labelloop.label_config.spec import UnsupportedLabelConfig, choices_result, parse_label_config
from labelloop.model.classification.consensus import crowdlab, majority_vote, majority_vote_multilabel
from labelloop.model.data_issues import find_data_issues, groups_from_pairs
from labelloop.model.embeddings import get_embedder
from labelloop.model.errors import LabelloopError, NotEnoughLabelsError
from labelloop.model.classification.label_issues import find_label_issues, find_multilabel_issues, issues_from_proba
from labelloop.model.store import atomic_write_text
from labelloop.model.text_cleaning import clean_text

from .annotations import annotator_labels
from .filters import has_model_version, save_view
from .predictions import push_predictions
from .sync import ProjectSnapshot

logger = logging.getLogger(__name__)

VIEW_TITLE = "Suspected label errors"


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


def _consensus_and_issues(matrix, X, spec, n_folds: int, messages: list, groups=None):
    """(majority vote, consensus, label issues, annotator table or None) for labelled rows.

    ``groups``: near-duplicate group per row, kept within one cross-validation fold."""
    if spec.multi_label:
        vote = majority_vote_multilabel(matrix)
        issues = find_multilabel_issues(X, vote.label, spec.labels, n_folds=n_folds, groups=groups)
        messages += issues.messages
        if (vote.n_annotators > 1).any():
            messages.append("CROWDLAB did not run: it handles single-label classes only; the per-label majority "
                            "vote is the consensus")
        return vote, vote, issues, None
    vote = majority_vote(matrix)
    issues = find_label_issues(X, vote.label.astype(str), n_folds=n_folds, groups=groups)
    messages += issues.messages
    several = int((vote.n_annotators > 1).sum())
    if not several:
        messages.append("CROWDLAB did not run: every task has a single annotator, so there are no disagreements "
                        "to settle; each annotator's label is the consensus")
        return vote, vote, issues, None
    probs = np.nan_to_num(issues.pred_probs, nan=1.0 / len(issues.classes))
    try:
        consensus = crowdlab(matrix, probs, issues.classes)
    except (NotEnoughLabelsError, ValueError) as exc:
        messages.append(f"CROWDLAB did not run ({exc}); the majority vote is the consensus of the {several} "
                        "tasks with several annotators")
        return vote, vote, issues, None
    # check the CROWDLAB consensus, not the raw vote, with the same out-of-sample probabilities
    rechecked = issues_from_proba(consensus.label.astype(str), issues.pred_probs, issues.classes, issues.scored)
    rechecked.n_folds, rechecked.messages = issues.n_folds, issues.messages
    return vote, consensus, rechecked, consensus.annotator_stats


def _label_value(label):
    return list(label) if isinstance(label, tuple) else (None if label is None else str(label))


def _findings(rows, vote, consensus, issues, data) -> list[dict]:
    """One finding per suspicious task, with every reason that applies and the lowest score."""
    tied = vote.tie & (consensus.agreement < 1.0) if consensus is not vote else vote.tie
    task_ids = [task_id for task_id, _ in rows]
    findings = []
    for i, (task_id, _) in enumerate(rows):
        kinds, reasons, scores = [], [], []
        if issues.is_issue[i]:
            kinds.append("label_error")
            reasons.append("likely label error (Cleanlab, out-of-sample)")
            scores.append(issues.quality[i])
        if tied[i]:
            kinds.append("tie")
            reasons.append("tied annotator votes")
            scores.append(issues.quality[i])
        if data.is_near_duplicate[i]:
            kinds.append("near_duplicate")
            others = [task_ids[j] for j in data.near_duplicate_of[i]]
            differ = any(_label_value(consensus.label[j]) != _label_value(consensus.label[i])
                         for j in data.near_duplicate_of[i])
            reasons.append(f"near-duplicate of task(s) {', '.join(map(str, others[:5]))}"
                           + (" with a different label" if differ else ""))
            scores.append(data.near_duplicate_score[i])
        if data.is_outlier[i]:
            kinds.append("outlier")
            reasons.append("outlier (far from every other labelled text)")
            scores.append(data.outlier_score[i])
        if not kinds:
            continue
        scores = np.asarray(scores, float)
        findings.append({"task_id": int(task_id), "given": _label_value(consensus.label[i]),
                         "suggested": _label_value(issues.suggested[i]),
                         "quality": 0.0 if np.isnan(scores).all() else float(np.nanmin(scores)),
                         "agreement": float(consensus.agreement[i]), "n_annotators": int(consensus.n_annotators[i]),
                         "issues": kinds, "reason": "; ".join(reasons)})
    return findings


def run_audit(client, project_id: int, *, out_dir: Path, model_name: str = "default", n_folds: int = 5,
              push: bool = True, full: bool = False, progress=None) -> AuditReport:
    """Sync, consensus, detection, report and (``push``) review in Label Studio.

    ``progress(step, total)``, if given, returns a callback that advances that step's bar.
    ``full`` pulls the whole project again instead of what changed since the last sync.
    """
    snapshot = ProjectSnapshot(out_dir / "snapshots", project_id)
    snapshot.sync(client, full=full, progress=progress("pulling tasks", None) if progress else None)
    state = snapshot.state()
    try:
        spec = parse_label_config(state["label_config"])
    except UnsupportedLabelConfig as exc:
        # the parser's message opens with what the backend prelabels; the audit says what it checks
        raise LabelloopError(f"project {project_id} cannot be audited: the audit checks classification labels; "
                             f"{str(exc).split(': ', 1)[-1]}") from None
    tasks = snapshot.tasks()
    messages: list[str] = []
    rows, texts, empty, unknown = [], [], [], set()
    for task in tasks.values():
        labels = annotator_labels(task, spec, unknown)
        if not labels:
            continue
        text = (task.get("data") or {}).get(spec.value_key)
        if not isinstance(text, str) or len(text.strip()) < 3 or not any(ch.isalnum() for ch in text):
            empty.append(task["id"])
            continue
        rows.append((task["id"], labels))
        texts.append(clean_text(text))
    if unknown:
        messages.append(f"annotations use labels that are not in the label config, left out: "
                        f"{', '.join(sorted(unknown)[:10])}")
    if not rows:
        raise NotEnoughLabelsError(f"project {project_id} has no finished annotations to audit")
    annotators = sorted({a for _, labels in rows for a in labels}, key=str)
    matrix = [[labels.get(a) for a in annotators] for _, labels in rows]
    X = get_embedder(model_name).embed(texts, progress=progress("embedding texts", len(texts)) if progress else None)
    if progress:
        progress("cross-validating, Cleanlab, near-duplicates and outliers", None)
    data = find_data_issues(X)
    # near-duplicates share a fold, so a copied wrong label cannot vouch for itself
    groups = groups_from_pairs(len(X), [(i, j) for i, others in enumerate(data.near_duplicate_of) for j in others])
    vote, consensus, issues, annotator_stats = _consensus_and_issues(matrix, X, spec, n_folds, messages, groups)
    n_ties = int(vote.tie.sum())
    if n_ties:
        messages.append(f"{n_ties} task(s) have tied votes: they are flagged for review")

    version = f"labelloop-audit-{time.strftime('%Y%m%d-%H%M%S')}"
    findings = _findings(rows, vote, consensus, issues, data)
    findings += [{"task_id": int(t), "given": None, "suggested": None, "quality": 0.0, "agreement": None,
                  "n_annotators": None, "issues": ["empty_text"], "reason": "empty or unintelligible text"}
                 for t in empty]
    findings.sort(key=lambda f: f["quality"])

    report = AuditReport(project_id, version, len(rows), findings, messages, task_ids=[t for t, _ in rows],
                         created_at=datetime.now(timezone.utc).isoformat())
    report.report_dir = write_report(out_dir / f"audit-{project_id}-{version.removeprefix('labelloop-audit-')}",
                                     report, issues, consensus, annotator_stats)
    if push and findings:
        def suggestion(f):
            labels = f["suggested"] if isinstance(f["suggested"], list) else [f["suggested"]]
            return [choices_result(spec, labels)] if f["suggested"] else []

        predictions = [{"task": f["task_id"], "model_version": version, "score": f["quality"],
                        "result": suggestion(f)} for f in findings]
        push_predictions(client, project_id, predictions)
        # the tasks flagged by this audit, worst first
        report.view_id = save_view(client, project_id, VIEW_TITLE, [has_model_version(version)],
                                   ["tasks:predictions_score"])
    return report


def write_report(directory: Path, report: AuditReport, issues, consensus, annotator_stats) -> Path:
    """findings.jsonl, summary.json, PNG plots and report.html in ``directory``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_text(directory / "findings.jsonl", "".join(json.dumps(f) + "\n" for f in report.findings))
    plots = []

    def save(fig, name, title):
        fig.tight_layout()
        fig.savefig(directory / name, dpi=100)
        plt.close(fig)
        plots.append((name, title))

    given = [label for g in consensus.label for label in (g if isinstance(g, tuple) else (g,))]
    labels, counts = np.unique(np.asarray(given, dtype=str), return_counts=True)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(labels, counts)
    ax.set_ylabel("tasks")
    save(fig, "label_distribution.png", "Label distribution (consensus)")

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(issues.quality[issues.scored], bins=30)
    ax.set_xlabel("label quality (lower is more suspicious)")
    save(fig, "quality_histogram.png", "Label quality scores")

    kinds, kind_counts = np.unique([k for f in report.findings for k in f["issues"]], return_counts=True)
    if len(kinds):
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.barh(kinds, kind_counts)
        ax.set_xlabel("tasks")
        save(fig, "findings_by_kind.png", "Findings by kind")

    flagged = issues.is_issue
    multi_label = any(isinstance(g, tuple) for g in issues.given)
    if flagged.any() and not multi_label:  # a confusion matrix needs one label per task
        classes = list(issues.classes)
        confusion = np.zeros((len(classes), len(classes)), dtype=int)
        for g, s in zip(issues.given[flagged], issues.suggested[flagged]):
            confusion[classes.index(g), classes.index(s)] += 1
        fig, ax = plt.subplots(figsize=(5, 4))
        ax.imshow(confusion, cmap="Blues")
        ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
        ax.set_yticks(range(len(classes)), classes)
        ax.set_xlabel("suggested")
        ax.set_ylabel("given")
        for (r, c), v in np.ndenumerate(confusion):
            ax.text(c, r, str(v), ha="center", va="center")
        save(fig, "given_vs_suggested.png", "Flagged tasks: given vs suggested label")

    if annotator_stats is not None:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.bar([str(a) for a in annotator_stats.index], annotator_stats["annotator_quality"])
        ax.set_ylabel("annotator quality (CROWDLAB)")
        save(fig, "annotator_quality.png", "Annotator quality")

    atomic_write_text(directory / "consensus.jsonl", "".join(
        json.dumps({"task_id": task_id, "label": _label_value(label)}) + "\n"
        for task_id, label in zip(report.task_ids, consensus.label)))
    summary = {"project_id": report.project_id, "model_version": report.model_version,
               "created_at": report.created_at,
               "labelled_tasks": report.n_labelled, "findings": len(report.findings),
               "findings_by_kind": dict(zip(kinds.tolist(), kind_counts.tolist())), "messages": report.messages}
    atomic_write_text(directory / "summary.json", json.dumps(summary, indent=2))
    rows = "".join(f"<tr><td>{f['task_id']}</td><td>{html.escape(str(f['given']))}</td>"
                   f"<td>{html.escape(str(f['suggested']))}</td><td>{f['quality']:.3f}</td>"
                   f"<td>{html.escape(f['reason'])}</td></tr>" for f in report.findings[:500])
    images = "".join(f"<h2>{html.escape(t)}</h2><img src='{n}'>" for n, t in plots)
    notes = "".join(f"<li>{html.escape(m)}</li>" for m in report.messages)
    atomic_write_text(directory / "report.html", f"""<!doctype html><meta charset="utf-8">
<title>labelloop audit, project {report.project_id}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}td,th{{padding:2px 8px}}</style>
<h1>Audit of project {report.project_id}</h1>
<p>{report.n_labelled} labelled tasks, {len(report.findings)} findings, model version
<code>{report.model_version}</code>.</p><ul>{notes}</ul>{images}
<h2>Findings (worst first)</h2><table><tr><th>task</th><th>given</th><th>suggested</th><th>quality</th>
<th>reason</th></tr>{rows}</table>""")
    return directory
