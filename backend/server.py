"""Serve the backend with gunicorn, a production WSGI server.

``python -m labelloop.backend.server`` is what `labelloop serve` runs: the command-line tool
starts the server by module path, so `labelloop.scripts` never imports the backend.
"""
from __future__ import annotations

import argparse
import logging
import sys

from gunicorn.app.base import BaseApplication

from labelloop.model.errors import LabelloopError

from .config import Settings, UnauthenticatedExposure, check_exposure


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


# seconds an idle keep-alive connection stays open (gunicorn's default): short, since clients
# reach the backend directly too; a proxy in front must close its idle connections sooner
KEEPALIVE_S = 2


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
        "keepalive": KEEPALIVE_S,
        "loglevel": log_level,
        "accesslog": "-",
    }
    _Gunicorn(settings, options).run()


def main(argv: list[str] | None = None) -> int:
    """Parse the flags of `labelloop serve` (see its --help), check exposure, serve."""
    parser = argparse.ArgumentParser(prog="labelloop serve")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9090)
    parser.add_argument("--model-dir")
    parser.add_argument("--model-name")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--allow-unauthenticated", action="store_true")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env(model_dir=args.model_dir, model_name=args.model_name, batch_size=args.batch_size)
        check_exposure(settings, args.host, allow_unauthenticated=args.allow_unauthenticated)
    except (UnauthenticatedExposure, LabelloopError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    serve(settings, host=args.host, port=args.port, workers=args.workers, threads=args.threads,
          log_level=args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
