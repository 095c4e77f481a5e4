"""The classification audit, after the labels are pulled: consensus, label issues, findings.

Input is plain: one row per labelled task with each annotator's label, and the texts'
embeddings. `audit_labels` resolves the consensus (majority vote, CROWDLAB between annotators
who disagree), cross-validates with near-duplicate groups kept in one fold, runs Cleanlab's
label checks and Datalab's near-duplicate and outlier checks, and assembles one finding per
suspicious task.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..data_issues import find_data_issues, groups_from_pairs
from ..errors import NotEnoughLabelsError
from .consensus import crowdlab, majority_vote, majority_vote_multilabel
from .label_issues import FILTER_BY, N_FOLDS, find_label_issues, find_multilabel_issues, issues_from_proba


@dataclass
class LabelAudit:
    """``findings``: dicts, worst (lowest quality) first. ``consensus``: the consensus label per
    row, in ``task_ids`` order. ``issues``: the `LabelIssues` behind them; ``annotator_stats``:
    CROWDLAB's annotator table, or None when it did not run."""

    task_ids: list
    findings: list[dict]
    consensus: np.ndarray
    issues: object
    annotator_stats: object = None
    messages: list[str] = field(default_factory=list)


def audit_labels(rows, X, *, labels, multi_label: bool, n_folds: int = N_FOLDS, texts=None,
                 filter_by: str = FILTER_BY) -> LabelAudit:
    """Audit labelled rows.

    ``rows``: ``[(task id, {annotator: label}), ...]`` where a label is a string, or a sorted
    tuple for multi-label; ``X``: ``(n_rows, dim)`` embeddings of the rows' texts; ``labels``:
    the config's label names; ``texts``: ``(n_rows,)`` the texts themselves, for the TF-IDF head
    of the label-error ensemble (see `labelloop.model.classification.label_issues`); ``filter_by``:
    which single-label items Cleanlab flags (its ``filter_by``).
    """
    if not rows:
        raise NotEnoughLabelsError("no labelled tasks to audit")
    if len(X) != len(rows):
        raise ValueError(f"X must have one row per labelled task ({len(rows)}), got {len(X)}")
    messages: list[str] = []
    annotators = sorted({a for _, by in rows for a in by}, key=str)
    matrix = [[by.get(a) for a in annotators] for _, by in rows]
    data = find_data_issues(X)
    # near-duplicates share a fold, so a copied wrong label cannot vouch for itself
    groups = groups_from_pairs(len(X), [(i, j) for i, others in enumerate(data.near_duplicate_of) for j in others])
    vote, consensus, issues, annotator_stats = _consensus_and_issues(matrix, X, labels, multi_label, n_folds,
                                                                     messages, groups, texts, filter_by)
    n_ties = int(vote.tie.sum())
    if n_ties:
        messages.append(f"{n_ties} task(s) have tied votes: they are flagged for review")
    findings = _findings(rows, vote, consensus, issues, data)
    if issues.n_estimated is not None:
        # every label the ensemble would not predict is flagged; the estimate says where most errors end.
        # Not the queue's length: the caller may still leave reviewed tasks out of it
        messages.append(f"Cleanlab estimates that about {issues.n_estimated} of the {int(issues.scored.sum())} "
                        f"labels checked are wrong; {int(issues.is_issue.sum())} are flagged because the "
                        f"out-of-sample model predicts another label, most doubtful first, and the first "
                        f"{int(issues.likely_errors().sum())} of them are marked likely label errors")
    return LabelAudit([t for t, _ in rows], findings, consensus.label, issues, annotator_stats, messages)


def _consensus_and_issues(matrix, X, labels, multi_label: bool, n_folds: int, messages: list, groups=None,
                          texts=None, filter_by: str = FILTER_BY):
    """(majority vote, consensus, label issues, annotator table or None) for labelled rows.

    ``groups``: near-duplicate group per row, kept within one cross-validation fold."""
    if multi_label:
        vote = majority_vote_multilabel(matrix)
        issues = find_multilabel_issues(X, vote.label, labels, n_folds=n_folds, groups=groups)
        messages += issues.messages
        if (vote.n_annotators > 1).any():
            messages.append("CROWDLAB did not run: it handles single-label classes only; the per-label majority "
                            "vote is the consensus")
        return vote, vote, issues, None
    vote = majority_vote(matrix)
    issues = find_label_issues(X, vote.label.astype(str), n_folds=n_folds, groups=groups, texts=texts,
                               filter_by=filter_by)
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
    rechecked = issues_from_proba(consensus.label.astype(str), issues.pred_probs, issues.classes, issues.scored,
                                  filter_by=filter_by)
    rechecked.n_folds, rechecked.messages = issues.n_folds, issues.messages
    return vote, consensus, rechecked, consensus.annotator_stats


def label_value(label):
    """A consensus label as JSON: a string, a list (multi-label) or None."""
    return list(label) if isinstance(label, tuple) else (None if label is None else str(label))


def _findings(rows, vote, consensus, issues, data) -> list[dict]:
    """One finding per suspicious task, with every reason that applies.

    A finding with ``review`` True goes to the review queue in Label Studio, ordered by its
    ``quality``: the label's quality (lower is worse) for likely label errors, tied votes and
    near-duplicates whose labels disagree. Its ``likely_error`` says whether the label is likely
    wrong or undecided: False only for a label the model doubts past Cleanlab's estimate
    (`LabelIssues.likely_errors`). Near-duplicates that agree and outliers are no
    labelling mistake: they stay in the report (``review`` False, ``quality`` their Datalab score),
    so they cannot push real errors down the queue (``bench/outcome.py`` measured the queue's
    precision falling from 0.91 to 0.19 on BBC News when agreeing duplicates led it).
    """
    tied = vote.tie & (consensus.agreement < 1.0) if consensus is not vote else vote.tie
    task_ids = [task_id for task_id, _ in rows]
    likely = issues.likely_errors()
    findings = []
    for i, (task_id, _) in enumerate(rows):
        kinds, reasons, hygiene = [], [], []
        if issues.is_issue[i]:
            kinds.append("label_error")
            reasons.append("likely label error (Cleanlab, out-of-sample)" if likely[i] else
                           "possible label error: the out-of-sample model predicts another label, "
                           "past Cleanlab's estimate of how many are wrong")
        if tied[i]:
            kinds.append("tie")
            reasons.append("tied annotator votes")
        if data.is_near_duplicate[i]:
            others = [task_ids[j] for j in data.near_duplicate_of[i]]
            differ = any(label_value(consensus.label[j]) != label_value(consensus.label[i])
                         for j in data.near_duplicate_of[i])
            kinds.append("near_duplicate_conflict" if differ else "near_duplicate")
            reasons.append(f"near-duplicate of task(s) {', '.join(map(str, others[:5]))}"
                           + (" with a different label" if differ else ""))
            if not differ:
                hygiene.append(data.near_duplicate_score[i])
        if data.is_outlier[i]:
            kinds.append("outlier")
            reasons.append("outlier (far from every other labelled text)")
            hygiene.append(data.outlier_score[i])
        if not kinds:
            continue
        review = len(hygiene) < len(kinds)
        quality = issues.quality[i] if review else min(hygiene)
        findings.append({"task_id": int(task_id), "given": label_value(consensus.label[i]),
                         "suggested": label_value(issues.suggested[i]),
                         "quality": 0.0 if np.isnan(quality) else float(quality), "review": bool(review),
                         "agreement": float(consensus.agreement[i]), "n_annotators": int(consensus.n_annotators[i]),
                         "issues": kinds, "reason": "; ".join(reasons)})
        if review:  # a tie or a conflicting copy is undecided whatever the model thinks
            findings[-1]["likely_error"] = bool(likely[i]) or bool(set(kinds) & {"tie", "near_duplicate_conflict"})
    return findings

