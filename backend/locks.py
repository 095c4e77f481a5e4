"""At most one training run per project, across threads, gunicorn workers, replicas and RQ workers.

With Redis (``REDIS_URL``) the lock is a Redis key with a short expiry that a heartbeat thread
keeps renewing, so a trainer killed with ``kill -9`` frees it within ``ttl_s``. Without Redis
it is an OS file lock in the shared model directory, which the kernel frees when its holder dies.
"""
from __future__ import annotations

import contextlib
import logging
import threading
from pathlib import Path

from filelock import FileLock

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def training_lock(project_id: int, *, model_dir: str, redis_url: str | None = None, ttl_s: float = 30.0):
    """Hold project ``project_id``'s training lock for the ``with`` block; waits for a running holder."""
    if redis_url:
        with _redis_lock(project_id, redis_url, ttl_s=ttl_s):
            yield
        return
    path = Path(model_dir) / ".locks" / f"train-{int(project_id)}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path):
        yield


@contextlib.contextmanager
def _redis_lock(project_id: int, redis_url: str, *, ttl_s: float):
    from redis import Redis

    lock = Redis.from_url(redis_url).lock(f"labelloop:train-lock:{int(project_id)}", timeout=ttl_s,
                                          sleep=0.2, thread_local=False)
    lock.acquire(blocking=True)
    stop = threading.Event()

    def heartbeat():
        while not stop.wait(ttl_s / 3):
            try:
                lock.reacquire()
            except Exception as exc:  # Redis away for a while: the run goes on, the lock may lapse
                logger.warning("project %s: cannot renew the training lock: %s", project_id, exc)

    beat = threading.Thread(target=heartbeat, name=f"labelloop-lock-{project_id}", daemon=True)
    beat.start()
    try:
        yield
    finally:
        stop.set()
        beat.join()
        try:
            lock.release()
        except Exception as exc:  # expired meanwhile, or Redis away: it lapses by itself
            logger.warning("project %s: training lock not released cleanly: %s", project_id, exc)
