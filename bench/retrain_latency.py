"""Time from an annotation (and its webhook) to the new model version serving, end to end.

A real Label Studio and the real backend (gunicorn). For each size, a project gets that many
annotated tasks plus 500 unlabelled ones; a first manual training run warms the embedding
cache. Then, ``--repeats`` times: one annotation is created through the SDK, Label Studio sends
the webhook, the backend debounces, pulls the change incrementally, fits the head and switches
/predict to the new version. We poll the backend's /setup until it answers the new version.

Printed: median and worst latency per label count, with the backend's debounce and the pull and
fit times (from the backend log) shown separately. Target: under 3 s at 5,000 labels (head only,
2 CPU cores). The first timed run after a bulk import can be slower: Label Studio keeps touching
the imported tasks for a while, so the incremental pull sees many of them as changed.

Usage: python bench/retrain_latency.py [--sizes 500 5000] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import requests  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from labelloop.backend.training import project_key  # noqa: E402
from labelloop.label_config import load  # noqa: E402
from labelloop.model.datasets import rotten_tomatoes  # noqa: E402
from labelloop.scripts import projects  # noqa: E402
from labelloop.scripts.client import connect  # noqa: E402
from labelloop.scripts.services import backend_service, label_studio_service  # noqa: E402

DEBOUNCE_S = 0.2


def choice(label):
    return [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]


def wait_version(backend_url, key, config, old, timeout):
    """Poll /setup until a trained version other than ``old`` serves."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        version = requests.post(f"{backend_url}/setup", json={"project": key, "schema": config},
                                timeout=5).json()["model_version"]
        if version != old and version.startswith("labelloop-v"):
            return version
        time.sleep(0.02)
    raise TimeoutError(f"no new version after {timeout} s")


def refreshes(log_path: Path) -> int:
    return len(re.findall(r"unlabelled tasks re-predicted", log_path.read_text()))


def wait_refresh(log_path: Path, count: int, timeout: float) -> None:
    """Wait until the backend log shows ``count`` completed prediction refreshes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if refreshes(log_path) >= count:
            return
        time.sleep(0.2)
    raise TimeoutError("the backend did not finish refreshing predictions")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 5000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", help="copy the backend log to this path at the end")
    args = parser.parse_args()
    console = Console()
    config = load("text_classification")
    items = rotten_tomatoes(seed=0)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        ls, creds = label_studio_service(Path(tmp) / "ls")
        with console.status("starting Label Studio (migrations: about 30 s)"):
            ls.start(timeout=300)
        backend = backend_service(Path(tmp) / "models", extra_env={
            "LABEL_STUDIO_URL": ls.url, "LABEL_STUDIO_API_KEY": creds.token,
            "LABELLOOP_DEBOUNCE_S": str(DEBOUNCE_S)})
        try:
            backend.start(timeout=120)
            client = connect(ls.url, creds.token)
            offset = 0
            for size in args.sizes:
                chunk, offset = items[offset:offset + size + 500 + args.repeats], offset + size + 500 + args.repeats
                project = projects.create_project(client, f"latency {size}", "text_classification")
                labelled = [{"data": {"text": it.text}, "annotations": [{"result": choice(it.label)}]}
                            for it in chunk[:size]]
                with console.status(f"{size} labels: importing"):
                    for start in range(0, len(labelled), 2000):
                        client.projects.import_tasks(id=project.id, request=labelled[start:start + 2000])
                    projects.import_tasks(client, project.id, ({"text": it.text} for it in chunk[size:]))
                projects.connect_backend(client, project.id, backend.url)
                key = project_key(project.id, client.projects.get(id=project.id).created_at)
                ml = client.ml.list(project=project.id)[0]
                with console.status(f"{size} labels: first training run (embeds every text once)"):
                    base = refreshes(backend.log_path)
                    t = time.perf_counter()
                    client.ml.train(id=ml.id)
                    version = wait_version(backend.url, key, config, "none", 900)
                    console.print(f"{size} labels: warm-up run served {version} after "
                                  f"{time.perf_counter() - t:.1f} s")
                    wait_refresh(backend.log_path, base + 1, 900)
                unlabelled = [t.id for t in projects.iter_tasks(client, project.id) if not t.annotations]
                latencies = []
                for r in range(args.repeats):
                    task_id = unlabelled[r]
                    t = time.perf_counter()
                    client.annotations.create(id=task_id, result=choice("Positive"))
                    version = wait_version(backend.url, key, config, version, 120)
                    latencies.append(time.perf_counter() - t)
                    wait_refresh(backend.log_path, base + 2 + r, 300)  # the refresh is not part of the figure
                log = backend.log_path.read_text()
                runs = [(float(m.group(2)), float(m.group(3))) for m in re.finditer(
                    r"\((\d+) labels, (?:head C [\d.]+, )?fit in ([\d.]+) s; pulled \d+ \w+ tasks in ([\d.]+) s\)", log)
                    if int(m.group(1)) > size]
                results.append((size, statistics.median(latencies), max(latencies),
                                statistics.median(f for f, _ in runs) if runs else float("nan"),
                                statistics.median(p for _, p in runs) if runs else float("nan")))
        finally:
            backend.stop()
            ls.stop()
            if args.keep:
                Path(args.keep).write_text(backend.log_path.read_text())

    table = Table(title=f"annotation -> new version serving (median of {args.repeats}), debounce {DEBOUNCE_S} s")
    for col in ("labels", "median s", "max s", "of which pull s", "of which fit s", "debounce s"):
        table.add_column(col, justify="right")
    for size, median, worst, fit, pull in results:
        table.add_row(str(size), f"{median:.2f}", f"{worst:.2f}", f"{pull:.2f}", f"{fit:.2f}", f"{DEBOUNCE_S:.2f}")
    console.print(table)
    for size, median, *_ in results:
        if size >= 5000:
            verdict = "meets" if median < 3.0 else "MISSES"
            console.print(f"{size} labels: {median:.2f} s {verdict} the 3 s target")


if __name__ == "__main__":
    main()
