"""What the classification audit sends to review: label problems, worst first, and not the
near-duplicates or outliers that are no labelling mistake; and an ensemble that reads the texts."""
import numpy as np

from labelloop.kinds.base import held_back, review_queue
from labelloop.model.classification.audit import audit_labels
from labelloop.model.classification.label_issues import find_label_issues


def clustered(seed=0, n=60, dim=16):
    rng = np.random.default_rng(seed)
    X = np.vstack([rng.normal(0, 1, size=(n, dim)) + 4, rng.normal(0, 1, size=(n, dim)) - 4])
    y = np.array(["A"] * n + ["B"] * n, dtype=object)
    return X, y, rng


def rows_of(y):
    return [(i + 1, {"ann": label}) for i, label in enumerate(y)]


def test_agreeing_near_duplicates_are_reported_but_never_queued_ahead_of_label_errors():
    X, y, rng = clustered()
    X[1:7] = X[0] + rng.normal(0, 1e-4, size=(6, X.shape[1]))  # seven copies, all labelled A
    y[[20, 80]] = ["B", "A"]  # two real label errors
    audit = audit_labels(rows_of(y), X, labels=["A", "B"], multi_label=False)
    by_task = {f["task_id"]: f for f in audit.findings}
    queue = review_queue(audit.findings)

    assert [f["task_id"] for f in queue[:2]] == sorted([21, 81], key=lambda t: by_task[t]["quality"])
    copies = [by_task[t] for t in range(1, 8) if t in by_task]
    assert copies, "the copies are reported"
    assert all(f["issues"] == ["near_duplicate"] and not f["review"] for f in copies)


def test_near_duplicates_that_disagree_are_queued_with_their_label_quality():
    X, y, rng = clustered()
    X[1] = X[0] + rng.normal(0, 1e-4, size=X.shape[1])
    y[1] = "B"  # a copy of an A, labelled B
    audit = audit_labels(rows_of(y), X, labels=["A", "B"], multi_label=False)
    by_task = {f["task_id"]: f for f in audit.findings}
    wrong, right = by_task[2], by_task[1]
    assert "near_duplicate_conflict" in wrong["issues"] and wrong["review"]
    assert "with a different label" in right["reason"] and right["review"]
    # ordered by how well each label fits: the wrong copy first, its correct twin after
    assert wrong["quality"] < 0.5 < right["quality"]
    assert wrong["quality"] == audit.issues.quality[1]


def test_the_tfidf_head_finds_errors_the_embeddings_cannot_see():
    rng = np.random.default_rng(3)
    n = 120
    X = rng.normal(size=(2 * n, 16))  # embeddings that know nothing about the classes
    words = ["refund invoice payment charge", "goal match striker penalty"]
    y = np.array(["billing"] * n + ["sport"] * n, dtype=object)
    texts = [f"{words[i // n]} {' '.join(rng.choice(['the', 'a', 'today', 'again'], 3))}" for i in range(2 * n)]
    flipped = rng.choice(2 * n, size=12, replace=False)
    noisy = y.copy()
    noisy[flipped] = np.where(y[flipped] == "billing", "sport", "billing")

    with_texts = find_label_issues(X, noisy, texts=texts)
    blind = find_label_issues(X, noisy)
    worst = np.argsort(with_texts.quality)[:12]
    assert len(set(worst) & set(flipped)) >= 10
    assert len(set(np.argsort(blind.quality)[:12]) & set(flipped)) <= 6  # chance level, about 1 in 10


def test_texts_without_words_skip_the_tfidf_head_with_a_message():
    X, y, _ = clustered()
    issues = find_label_issues(X, y, texts=["!!!"] * len(y))
    assert any("tfidf head" in m and "skipped" in m for m in issues.messages)
    assert issues.scored.all() and not np.isnan(issues.quality).any()


def test_the_report_shows_a_one_line_snippet_of_any_task_text():
    from labelloop.scripts.audit import SNIPPET_CHARS, snippet

    assert snippet("  two\r\nlines\tand  spaces ") == "two lines and spaces"
    long = snippet("word " * 100)
    assert len(long) == SNIPPET_CHARS and long.endswith("…") and long.startswith("word word")
    assert snippet(None) == "" and snippet(12) == "12"  # a missing or non-text field is no crash


def _task(annotations, predictions):
    return {"annotations": [{"created_at": c, "updated_at": u} for c, u in annotations],
            "predictions": [{"model_version": v, "created_at": t} for v, t in predictions]}


def test_a_task_annotated_again_after_an_audit_queued_it_is_not_queued_again():
    from labelloop.scripts.audit import leave_reviewed_out, reviewed_tasks

    audit = ("labelloop-audit-20261128-120000", "2026-11-28T12:00:00.000000Z")
    tasks = {
        1: _task([("2026-11-28T10:00:00Z", "2026-11-28T12:05:00Z")], [audit]),  # updated after: reviewed
        2: _task([("2026-11-28T10:00:00Z", "2026-11-28T10:00:00Z")], [audit]),  # queued, not looked at
        3: _task([("2026-11-28T13:00:00Z", "2026-11-28T13:00:00Z")],  # annotated later, but never queued
                 [("labelloop-v3", "2026-11-28T11:00:00Z")]),
        4: _task([("2026-11-28T10:00:00Z", "2026-11-28T10:00:00Z"), ("2026-11-28T12:30:00Z", "2026-11-28T12:30:00Z")],
                 [audit, ("labelloop-audit-20261128-140000", "2026-11-28T14:00:00Z")]),  # added after the first
    }
    assert reviewed_tasks(tasks) == {1: audit[0], 4: audit[0]}
    # times without a zone are UTC, as Label Studio stores them; a time that does not parse is no review
    tasks[2] = _task([("2026-11-28T10:00:00", "2026-11-28T12:01:00")], [audit])
    tasks[6] = _task([("2026-11-28T10:00:00Z", "not a time")], [audit])
    assert reviewed_tasks(tasks) == {1: audit[0], 2: audit[0], 4: audit[0]}
    tasks[2] = _task([("2026-11-28T10:00:00Z", "2026-11-28T10:00:00Z")], [audit])
    # skipping a queued task decides nothing: it stays in the queue
    tasks[7] = _task([("2026-11-28T10:00:00Z", "2026-11-28T10:00:00Z"), ("2026-11-28T12:10:00Z",) * 2], [audit])
    tasks[7]["annotations"][1]["was_cancelled"] = True
    assert reviewed_tasks(tasks) == {1: audit[0], 4: audit[0]}
    del tasks[6], tasks[7]

    findings = [{"task_id": t, "review": True, "reason": "label error", "quality": q}
                for t, q in ((1, 0.1), (2, 0.2), (3, 0.3), (4, 0.4))]
    findings.append({"task_id": 5, "review": False, "reason": "outlier", "quality": 0.0})
    messages = []
    out = leave_reviewed_out(findings, tasks, messages)
    assert [f["task_id"] for f in out if f["review"]] == [2, 3]
    assert [f["task_id"] for f in out] == [2, 3, 1, 4, 5]  # the queue first, each part in its order
    reviewed = {f["task_id"]: f for f in out}[1]
    assert reviewed["reviewed_after"] == audit[0] and "not queued again" in reviewed["reason"]
    assert messages == ["2 finding(s) on tasks annotated again after an earlier audit queued them: "
                        "in the report, not queued again"]


def test_watch_audits_again_after_a_quarter_of_the_queue_and_never_after_fewer_than_five():
    import pytest

    from labelloop.scripts.audit import rerun_after

    assert [rerun_after(n) for n in (1, 4, 5, 20, 21, 120)] == [1, 4, 5, 5, 6, 30]
    assert rerun_after(10, share=1.0) == 10 and rerun_after(10, share=0.5, minimum=1) == 5
    with pytest.raises(ValueError, match="share"):
        rerun_after(10, share=0)


def test_review_progress_counts_the_queued_tasks_reviewed_since():
    from labelloop.scripts.audit import AuditReport, review_progress

    audit = ("labelloop-audit-20261128-120000", "2026-11-28T12:00:00Z")
    before, after = ("2026-11-28T10:00:00Z",) * 2, ("2026-11-28T10:00:00Z", "2026-11-28T12:05:00Z")
    tasks = {1: _task([after], [audit]), 2: _task([before], [audit]), 3: _task([after], [audit]),
             4: _task([after], [])}
    findings = [{"task_id": 1, "review": True}, {"task_id": 2, "review": True},
                {"task_id": 3, "review": False},  # reviewed, but this audit did not queue it
                {"task_id": 4, "review": True}, {"task_id": 9, "review": True}]  # 9: deleted since
    report = AuditReport(1, audit[0], 5, findings)
    assert review_progress(tasks, report) == (1, 3)


def test_watch_rides_out_an_unreachable_label_studio_and_stops_when_no_likely_error_is_left(monkeypatch, tmp_path):
    """The loop alone (the real-Label-Studio test covers the audits): a failed check or rerun waits
    for the next one, and a queue with no likely error left (only labels the model doubts past
    Cleanlab's estimate) ends the watch."""
    from labelloop.scripts import audit as audit_module
    from labelloop.scripts.audit import AuditReport, watch_audit
    from labelloop.scripts.client import LabelStudioUnavailable

    version, at = "labelloop-audit-1", "2026-11-28T12:00:00Z"
    down = LabelStudioUnavailable("Label Studio is not reachable")
    # each rerun: an audit, or Label Studio down
    audits = iter([[1, 2], down, [3]])
    checks = iter([down, {1: [("2026-11-28T10:00:00Z",) * 2]},
                   {1: [("2026-11-28T10:00:00Z", "2026-11-28T12:05:00Z")]}])
    state = {}

    def fake_audit(client, project_id, *, out_dir, **options):
        outcome = next(audits)
        if isinstance(outcome, Exception):
            raise outcome
        findings = [{"task_id": t, "review": True, "likely_error": t != 3} for t in outcome]
        return AuditReport(project_id, version, 10, findings)

    class Snapshot:
        @classmethod
        def in_data_dir(cls, data_dir, project_id):
            return cls()

        def sync(self, client):
            outcome = next(checks)
            if isinstance(outcome, Exception):
                raise outcome
            # task 2 was deleted; task 1 is reviewed at the third check
            state["tasks"] = {t: _task(annotations, [(version, at)]) for t, annotations in outcome.items()}

        def tasks(self):
            return state["tasks"]

    monkeypatch.setattr(audit_module, "run_audit", fake_audit)
    monkeypatch.setattr(audit_module, "ProjectSnapshot", Snapshot)
    reports, polls, sleeps = [], [], []
    last = watch_audit(None, 3, out_dir=tmp_path, every=2, poll_s=7, on_report=reports.append,
                       on_poll=lambda *args: polls.append(args), sleep=sleeps.append)
    # the deleted task 2 lowers the count to 1, which the third check reaches
    assert polls == [(0, 2, 2), (1, 2, 2)]
    assert [len(r.findings) for r in reports] == [2, 1] and last is reports[-1]
    assert sleeps == [7, 7, 7, 7]  # down, not yet, reviewed; then a rerun that found Label Studio down


def test_every_label_the_ensemble_would_not_predict_is_flagged_and_the_notes_say_how_many_are_wrong():
    # overlapping classes: Cleanlab's default filter (prune_by_noise_rate) flagged only 2 of the 5
    # labels the ensemble predicts otherwise here
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0, 1, size=(60, 16)) + 0.7, rng.normal(0, 1, size=(60, 16)) - 0.7])
    y = np.array(["A"] * 60 + ["B"] * 60, dtype=object)
    y[[3, 17, 70, 101]] = ["B", "B", "A", "A"]
    audit = audit_labels(rows_of(y), X, labels=["A", "B"], multi_label=False)
    label_errors = {f["task_id"] for f in audit.findings if "label_error" in f["issues"]}
    disagree = {i + 1 for i in np.flatnonzero(audit.issues.suggested != audit.issues.given)}
    assert len(disagree) >= 4 and label_errors == disagree
    n_est = audit.issues.n_estimated
    note = next(m for m in audit.messages if m.startswith("Cleanlab estimates"))
    assert note == (f"Cleanlab estimates that about {n_est} of the 120 labels checked are wrong; "
                    f"{len(disagree)} are flagged because the out-of-sample model predicts another label, most "
                    f"doubtful first, and the first {n_est} of them are marked likely label errors")
    assert 1 <= n_est < len(disagree)
    # the most doubtful n_est are likely errors, which export --exclude-flagged holds back; the rest is exported
    queue = sorted((f for f in audit.findings if f["review"]), key=lambda f: f["quality"])
    assert [f["likely_error"] for f in queue] == [True] * n_est + [False] * (len(queue) - n_est)
    assert [held_back(f) for f in queue] == [f["likely_error"] for f in queue]
    assert "past Cleanlab's estimate" in queue[-1]["reason"] and "past" not in queue[0]["reason"]


def test_a_tie_or_a_conflicting_copy_is_held_back_whatever_the_model_thinks():
    rng = np.random.default_rng(1)
    X = np.vstack([rng.normal(0, 1, size=(40, 16)) + 1.5, rng.normal(0, 1, size=(40, 16)) - 1.5])
    rows = rows_of(np.array(["A"] * 40 + ["B"] * 40, dtype=object))
    rows[5] = (6, {"ann": "A", "ann2": "B"})  # a tie on a clear A
    X[60] = X[61] + 1e-4  # a copy of task 62 (B) labelled A
    rows[60] = (61, {"ann": "A"})
    audit = audit_labels(rows, X, labels=["A", "B"], multi_label=False)
    by_task = {f["task_id"]: f for f in audit.findings}
    assert "tie" in by_task[6]["issues"] and by_task[6]["likely_error"] and held_back(by_task[6])
    assert "near_duplicate_conflict" in by_task[61]["issues"] and held_back(by_task[61])
    # report-only findings (the copy the model agrees with) and findings from other kinds
    assert not held_back({"review": False, "likely_error": True}) and held_back({"task_id": 1})


def test_the_review_order_goes_into_the_queued_tasks_data_and_off_every_other_task(monkeypatch):
    from labelloop.scripts import audit as audit_script
    from labelloop.scripts.audit import ORDER_KEY, review_order_changes

    tasks = {1: {"data": {"text": "a"}}, 2: {"data": {"text": "b", ORDER_KEY: 1}},
             3: {"data": {"text": "c", ORDER_KEY: 2}}, 4: {"data": {"text": "d", ORDER_KEY: 9}},
             5: {"data": None}}
    # 2 moves down, 1 and 5 get a position, 3 is already right, 4 left the queue
    assert review_order_changes(tasks, [1, 3, 2, 5]) == [(1, 1), (2, 3), (5, 4), (4, None)]
    monkeypatch.setattr(audit_script, "MAX_ORDERED", 2)  # past the cap the queue follows in task order
    assert review_order_changes(tasks, [1, 3, 2, 5]) == [(1, 1), (2, None), (4, None)]
    assert review_order_changes(tasks, [2, 3]) == [(4, None)]


def test_the_queue_is_worst_first_whatever_the_finding():
    findings = [{"task_id": 1, "quality": 0.05, "review": True, "likely_error": False},
                {"task_id": 2, "quality": 0.30, "review": True, "likely_error": True},  # a tie, say
                {"task_id": 3, "quality": 0.01, "review": True, "likely_error": True},
                {"task_id": 4, "quality": 0.00, "review": False},
                {"task_id": 5, "quality": 0.20, "review": True}]  # a kind without an estimate
    assert [f["task_id"] for f in review_queue(findings)] == [3, 1, 5, 2]
