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


def _compose_cli() -> list[str] | None:
    import shutil
    import subprocess

    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


def test_compose_file_is_valid_for_compose_itself(tmp_path):
    import os
    import subprocess

    from conftest import _require_or_skip

    cli = _compose_cli()
    if cli is None:
        _require_or_skip("neither `docker compose` nor docker-compose is installed (.ci/run installs docker-compose)")
    env = {**os.environ, "POSTGRES_PASSWORD": "p", "LABEL_STUDIO_PASSWORD": "p", "LABEL_STUDIO_API_KEY": "k" * 40,
           "BASIC_AUTH_USER": "u", "BASIC_AUTH_PASS": "p"}
    done = subprocess.run([*cli, "-f", str(ROOT / "docker" / "docker-compose.yml"), "config"], capture_output=True,
                          text=True, env=env)
    assert done.returncode == 0, done.stderr
    resolved = yaml.safe_load(done.stdout)
    assert resolved["services"]["backend"]["environment"]["REDIS_URL"] == "redis://redis:6380/0"
    # without the secrets compose refuses to start
    bare = {k: v for k, v in env.items() if k != "POSTGRES_PASSWORD"}
    refused = subprocess.run([*cli, "-f", str(ROOT / "docker" / "docker-compose.yml"), "config"],
                             capture_output=True, text=True, env=bare)
    assert refused.returncode != 0 and "POSTGRES_PASSWORD" in refused.stderr


def test_compose_describes_the_stack_topology():
    services = COMPOSE["services"]
    assert {"postgres", "redis", "label-studio", "backend", "proxy", "worker"} <= set(services)
    ls_env = services["label-studio"]["environment"]
    assert ls_env["DJANGO_DB"] == "default" and ls_env["POSTGRE_HOST"] == "postgres"
    assert services["backend"]["deploy"]["replicas"] >= 2
    # Redis never on 6379 (Label Studio would use it for its own jobs), and everyone uses that one
    redis_port = int(shlex.split(services["redis"]["command"])[shlex.split(services["redis"]["command"]).index("--port") + 1])
    assert redis_port != 6379
    for name in ("backend", "worker"):
        env = services[name]["environment"]
        assert env["REDIS_URL"] == f"redis://redis:{redis_port}/0"
        assert env["LABELLOOP_BACKEND_URL"] == "http://proxy:9090"
        assert "models:/data/models" in services[name]["volumes"]
        assert env["LABELLOOP_EMBEDDING_CACHE"].startswith("/data/models/")  # shared by replicas and worker
    worker = shlex.split(services["worker"]["command"])
    assert worker[:2] == ["labelloop", "worker"]
    get_command(app).commands["worker"].make_context("worker", worker[2:])


def _block_text(conf: str, opening: str) -> str:
    """What lies between ``opening`` and the block's closing brace (blocks without nested ones)."""
    block = conf[conf.index(opening) + len(opening):]
    return block[:block.index("}")]


def _location_directives(conf: str) -> set[str]:
    return {" ".join(line.split()) for line in _block_text(conf, "location / {").splitlines() if line.strip()}


def _block(conf: str, opening: str) -> list[str]:
    """The words of a block's directives, comments left out."""
    return " ".join(line.split("#")[0] for line in _block_text(conf, opening).splitlines()).split()


def _seconds(words: list[str], directive: str) -> float:
    value = words[words.index(directive) + 1].rstrip(";")
    return float(value.removesuffix("s"))


def test_compose_proxy_is_configured_like_the_tested_stack(tmp_path):
    from conftest import _require_or_skip
    from labelloop.scripts.services import ServiceError, nginx_service

    try:
        nginx_service(tmp_path, ["127.0.0.1:1"])
    except ServiceError as exc:
        _require_or_skip(str(exc))
    tested_conf, compose_conf = (tmp_path / "nginx.conf").read_text(), (ROOT / "docker" / "nginx.conf").read_text()
    assert _location_directives(compose_conf) == _location_directives(tested_conf)
    # both proxies close idle connections before the backend does: else a reused connection the
    # backend is closing resets, and nginx marks a live replica down
    from labelloop.backend.server import KEEPALIVE_S

    for conf in (tested_conf, compose_conf):
        upstream = _block(conf, "upstream labelloop_backends {")
        assert 0 < _seconds(upstream, "keepalive_timeout") < KEEPALIVE_S
    assert "./nginx.conf:/etc/nginx/nginx.conf:ro" in COMPOSE["services"]["proxy"]["volumes"]


def test_the_backend_image_copies_every_package_folder():
    import tomllib

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    folders = {path.split("/")[0] for path in pyproject["tool"]["setuptools"]["package-dir"].values()}
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    missing = [f for f in sorted(folders) if f"COPY {f} ./{f}" not in dockerfile]
    assert missing == []
