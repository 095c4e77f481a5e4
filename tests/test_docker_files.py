"""No Docker engine runs here, so check what can be checked: the compose services run the same
commands, flags and versions that the tests and `make demo` run."""
import re
import shlex
from pathlib import Path

import yaml
from typer.main import get_command

from labelloop.scripts.cli import app
from labelloop.scripts.services import LABEL_STUDIO_VERSION, label_studio_service

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker" / "docker-compose.yml").read_text())


def flags(argv):
    return {a for a in argv if a.startswith("-")}


def test_label_studio_version_is_the_same_everywhere():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(rf"^LS_VERSION := {re.escape(LABEL_STUDIO_VERSION)}$", makefile, re.M)
    dockerfile = (ROOT / "docker" / "label-studio.Dockerfile").read_text()
    assert f"label-studio=={LABEL_STUDIO_VERSION}" in dockerfile


def test_compose_label_studio_uses_the_tested_start_flags(tmp_path, monkeypatch):
    monkeypatch.setenv("LABELLOOP_LABEL_STUDIO_BIN", "/bin/true")
    service, _ = label_studio_service(tmp_path)
    compose = shlex.split(COMPOSE["services"]["label-studio"]["command"])
    assert compose[:2] == ["label-studio", "start"]
    assert flags(compose) == flags(service.command)
    env = COMPOSE["services"]["label-studio"]["environment"]
    assert env["ML_BLOCK_LOCAL_IP"] == service.env["ML_BLOCK_LOCAL_IP"] == "false"
    assert env["USE_DEFAULT_BANNED_SUBNETS"] == service.env["USE_DEFAULT_BANNED_SUBNETS"] == "false"


def test_compose_backend_runs_labelloop_serve_with_valid_options():
    argv = shlex.split(COMPOSE["services"]["backend"]["command"])
    assert argv[:2] == ["labelloop", "serve"]
    serve = get_command(app).commands["serve"]
    ctx = serve.make_context("serve", argv[2:])  # raises on an unknown option
    assert ctx.params["host"] == "0.0.0.0" and ctx.params["port"] == 9090
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    assert '"labelloop", "serve"' in dockerfile and "torch==2.13.0" in dockerfile


def test_compose_backend_runs_with_credentials():
    env = COMPOSE["services"]["backend"]["environment"]
    # ${VAR:?message}: compose refuses to start without them, as `labelloop serve` would
    assert env["BASIC_AUTH_USER"].startswith("${BASIC_AUTH_USER:?")
    assert env["BASIC_AUTH_PASS"].startswith("${BASIC_AUTH_PASS:?")
