"""The command-line tool fails with a clear message, not a traceback."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from labelloop.scripts.services import free_port


def run(*args, env=None):
    return subprocess.run([sys.executable, "-m", "labelloop.scripts.cli", *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "COLUMNS": "200", **(env or {})})


def test_unreachable_label_studio():
    out = run("rank", "--project", "1", "--url", f"http://127.0.0.1:{free_port()}", "--api-key", "x")
    assert out.returncode == 2
    assert "Label Studio is not reachable" in out.stdout and "Traceback" not in out.stderr


def test_missing_api_key():
    out = run("rank", "--project", "1", env={"LABEL_STUDIO_API_KEY": ""})
    assert out.returncode == 2 and "LABEL_STUDIO_API_KEY" in out.stdout


def test_bad_strategy_setting_stops_serve_early():
    out = run("serve", "--port", str(free_port()), env={"LABELLOOP_STRATEGY": "bald"})
    assert out.returncode == 2 and "unknown strategy 'bald'" in out.stderr and "Traceback" not in out.stderr


def test_worker_says_clearly_when_redis_is_unreachable(monkeypatch):
    from typer.testing import CliRunner

    from labelloop.scripts.cli import app

    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    result = CliRunner().invoke(app, ["worker"])
    assert result.exit_code == 1
    assert "unreachable" in result.output and "Traceback" not in result.output


def test_audit_watch_says_why_it_stopped(monkeypatch):
    from typer.testing import CliRunner

    from labelloop.scripts import audit, client
    from labelloop.scripts.audit import AuditReport
    from labelloop.scripts.cli import app

    # one label the model still doubts, past Cleanlab's estimate: the watch is over, the queue stays
    last = AuditReport(3, "labelloop-audit-1", 10, [{"task_id": 1, "review": True, "likely_error": False},
                                                    {"task_id": 2, "review": False}])
    monkeypatch.setattr(client, "connect", lambda url, api_key: object())
    monkeypatch.setattr(audit, "watch_audit", lambda *args, **kwargs: last)
    result = CliRunner().invoke(app, ["audit", "--project", "3", "--watch"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert ("no likely label error left to review: stopped watching; the 1 task(s) still queued hold labels "
            "the model doubts past Cleanlab's estimate of the errors") in result.output
    assert "queued nothing" not in result.output


def test_audit_says_where_the_likely_errors_end_in_the_view(monkeypatch):
    from typer.testing import CliRunner

    from labelloop.scripts import audit, client
    from labelloop.scripts.audit import AuditReport
    from labelloop.scripts.cli import app

    findings = [{"task_id": 1, "review": True, "likely_error": True, "quality": 0.1, "issues": ["label_error"]},
                {"task_id": 2, "review": True, "likely_error": True, "quality": 0.4, "issues": ["tie"]},
                {"task_id": 3, "review": True, "likely_error": False, "quality": 0.2, "issues": ["label_error"]},
                {"task_id": 4, "review": False, "quality": 0.0, "issues": ["outlier"]}]
    report = AuditReport(3, "labelloop-audit-1", 10, findings, report_dir=Path("out"), view_id=7)
    monkeypatch.setattr(client, "connect", lambda url, api_key: object())
    monkeypatch.setattr(audit, "run_audit", lambda *args, **kwargs: report)
    result = CliRunner().invoke(app, ["audit", "--project", "3"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "3 for review" in result.output
    # worst first: 1 (likely), 3 (past the estimate), 2 (a tie: likely)
    assert "likely errors are all among" not in result.output  # the last is likely
    findings[1]["quality"] = 0.15
    result = CliRunner().invoke(app, ["audit", "--project", "3"], env={"COLUMNS": "200"})
    assert ("its 2 likely errors are all among its first 2; the last 1 are labels the model doubts past "
            "Cleanlab's estimate") in " ".join(result.output.split())
    assert "nothing to review" not in result.output
    for finding in findings:  # all reviewed: the next audit queues nothing and the view is empty
        finding["review"] = False
    result = CliRunner().invoke(app, ["audit", "--project", "3"], env={"COLUMNS": "200"})
    assert "0 for review" in result.output and "review them in Label Studio" not in result.output
    assert "nothing to review: view 'Suspected label errors' in Label Studio is empty now" in result.output


@pytest.mark.integration
def test_a_refused_key_or_a_missing_project_is_one_line_without_headers(label_studio, tmp_path):
    """The SDK's own message for these holds every response header, Label Studio's session cookie included."""
    wrong_key = ["--url", label_studio.url, "--api-key", "not-a-token"]
    right_key = ["--url", label_studio.url, "--api-key", label_studio.token]
    for args in (["audit", "--project", "1", *wrong_key], ["rank", "--project", "1", *wrong_key]):
        out = run(*args)
        assert out.returncode == 2, out.stderr
        assert "Label Studio refused the API key (HTTP 401: Invalid token.)" in out.stdout
        assert "Traceback" not in out.stderr and "sessionid" not in out.stdout + out.stderr
    for args in (["sync", "--project", "987654", *right_key, "--out", str(tmp_path / "snapshot")],
                 ["prelabel", "--project", "987654", *right_key]):
        out = run(*args)
        assert out.returncode == 2, out.stderr
        assert "no such object (HTTP 404: No Project matches the given query.): check --project" in out.stdout
        assert "Traceback" not in out.stderr


def test_label_studio_gone_mid_command_is_named():
    import httpx

    from labelloop.scripts.client import label_studio_error

    with pytest.raises(httpx.TransportError) as caught:
        httpx.get(f"http://127.0.0.1:{free_port()}/api/projects", timeout=5)
    assert label_studio_error(caught.value).startswith("Label Studio stopped answering (ConnectError")
    assert label_studio_error(ValueError("not Label Studio's")) is None
