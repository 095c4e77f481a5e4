"""Past one machine, on one machine: Label Studio on PostgreSQL, Redis for training, backend
replicas behind nginx, and RQ training workers, all sharing one model directory.

`labelloop stack` runs it for local use and the integration tests start the same thing;
``docker/docker-compose.yml`` describes the same topology for containers. Every service is a
process on 127.0.0.1, started and stopped by PID (see `labelloop.scripts.services`).
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from .services import (LabelStudioCredentials, ManagedService, PostgresDatabase, backend_service, free_port,
                       label_studio_service, nginx_service, postgres_service, redis_service, stored_credentials,
                       worker_service)


@dataclass
class Stack:
    """The running services; ``proxy.url`` is the one backend URL Label Studio connects to."""

    state_dir: Path
    postgres: ManagedService
    database: PostgresDatabase
    redis: ManagedService
    label_studio: ManagedService
    credentials: LabelStudioCredentials
    replicas: list[ManagedService]
    proxy: ManagedService
    workers: list[ManagedService]
    model_dir: Path

    @property
    def backend_url(self) -> str:
        return self.proxy.url

    def worker_env(self) -> dict:
        """The environment every backend replica and training worker shares."""
        return {"REDIS_URL": self.redis.redis_url, "LABELLOOP_MODEL_DIR": str(self.model_dir),
                # one embedding cache for every replica and worker (unless the caller chose one)
                "LABELLOOP_EMBEDDING_CACHE": os.environ.get("LABELLOOP_EMBEDDING_CACHE")
                or str(self.state_dir / "embeddings"),
                "LABEL_STUDIO_URL": self.label_studio.url, "LABEL_STUDIO_API_KEY": self.credentials.token,
                # Label Studio knows the proxy's URL, not a replica's: projects connect that one
                "LABELLOOP_BACKEND_URL": self.proxy.url}

    def _new_worker(self, number: int) -> ManagedService:
        return worker_service(self.state_dir / f"worker-{number}.log", self.worker_env(),
                              name=f"labelloop worker {number}")

    def add_worker(self) -> ManagedService:
        """Start one more training worker (e.g. after one was killed)."""
        # a new log even after one died
        worker = self._new_worker(len(list(self.state_dir.glob("worker-*.log"))) + 1).start(timeout=60)
        self.workers.append(worker)
        return worker

    def stop(self) -> None:
        """Stop everything, newest first; PostgreSQL's cluster stays for the next start."""
        for service in [*self.workers, self.proxy, *self.replicas, self.label_studio, self.redis, self.postgres]:
            try:
                service.stop()
            except Exception:  # stop the rest whatever one did
                pass

    def remove_data(self) -> None:
        """Delete the state (tests): the state dir and, when run as root, PostgreSQL's cluster in /tmp."""
        cluster = getattr(self.postgres, "cluster", None)
        if cluster is not None and self.state_dir not in Path(cluster).parents:
            shutil.rmtree(cluster, ignore_errors=True)
        shutil.rmtree(self.state_dir, ignore_errors=True)


def build_stack(state_dir: Path, *, replicas: int = 2, workers_per_replica: int = 2, trainers: int = 1,
                port: int | None = None, proxy_port: int | None = None, model_name: str = "default",
                backend_env: dict | None = None) -> Stack:
    """Describe the services (nothing starts yet; see `start_stack`)."""
    state_dir = Path(state_dir).resolve()
    postgres, database = postgres_service(state_dir / "postgres")
    redis = redis_service(state_dir / "redis")
    label_studio, credentials = label_studio_service(state_dir / "label-studio", port=port, database=database,
                                                      credentials=stored_credentials(state_dir))
    model_dir = state_dir / "models"
    model_dir.mkdir(parents=True, exist_ok=True)
    proxy_port = proxy_port or free_port()
    replica_ports = [free_port() for _ in range(replicas)]
    proxy = nginx_service(state_dir / "nginx", [f"127.0.0.1:{p}" for p in replica_ports], port=proxy_port)
    stack = Stack(state_dir, postgres, database, redis, label_studio, credentials, [], proxy, [], model_dir)
    env = {**stack.worker_env(), **(backend_env or {})}  # backend_env: the replicas' only
    stack.replicas = [backend_service(model_dir, port=p, model_name=model_name, workers=workers_per_replica,
                                      log_path=state_dir / f"backend-{i + 1}.log", extra_env=env,
                                      name=f"labelloop backend {i + 1}")
                      for i, p in enumerate(replica_ports)]
    stack.proxy.auth = stack.replicas[0].auth if stack.replicas else None
    stack.workers = [stack._new_worker(i + 1) for i in range(trainers)]
    return stack


def start_stack(stack: Stack, *, progress=None) -> Stack:
    """Start every service of ``stack`` in dependency order; on a failure, stop what started."""
    order = [(stack.postgres, 60), (stack.redis, 30), (stack.label_studio, 600),
             *[(r, 180) for r in stack.replicas], (stack.proxy, 30), *[(w, 60) for w in stack.workers]]
    try:
        for service, timeout in order:
            if progress:
                progress(f"starting {service.name}")
            service.start(timeout=timeout)
    except BaseException:
        stack.stop()
        raise
    return stack
