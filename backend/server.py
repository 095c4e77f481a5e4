"""Serve the backend with gunicorn, a production WSGI server (`labelloop serve`)."""
from __future__ import annotations

import logging

from gunicorn.app.base import BaseApplication

from .config import Settings


class _Gunicorn(BaseApplication):
    def __init__(self, settings: Settings, options: dict):
        self.settings = settings
        self.options = options
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        from .app import create_app

        return create_app(self.settings)


def serve(settings: Settings, *, host: str = "127.0.0.1", port: int = 9090, workers: int = 1,
          threads: int = 8, log_level: str = "info") -> None:
    """Run until interrupted. Each worker process holds its own model cache, so one worker with
    several threads is the memory-friendly default; add workers for more CPU-bound throughput."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    options = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread",
        # Label Studio waits up to 100 s for /predict; leave headroom for a large batch
        "timeout": 300,
        "graceful_timeout": 10,
        "loglevel": log_level,
        "accesslog": "-",
    }
    _Gunicorn(settings, options).run()
