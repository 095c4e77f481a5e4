"""Load through the proxy: Locust users on /predict while annotations arrive and retrain.

For one backend replica with 2 gunicorn workers, then two replicas with 1 worker each (the same
number of serving processes on the same cores: scaling out, not adding CPUs), a fresh stack (`labelloop.scripts.stack`: Label Studio on PostgreSQL,
Redis, nginx, one RQ worker) gets a sentiment project of 400 tasks, 20 annotations and a first
trained version. Then Locust's users (`bench/locust_predict.py`, 9 single-task /predict calls to
each page of 20) run for ``--seconds`` while an annotator thread labels a task every 2 s through
the SDK, so Label Studio's webhooks keep the worker retraining and versions keep switching.

Printed per setup: requests, failures, throughput, p50/p95/p99 latency, the versions served, and
the ratios two replicas ÷ one measured in the same run. On 2 cores, expect no gain, and no loss.

Usage: python bench/load.py [--users 8] [--seconds 60]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from labelloop.model.datasets import rotten_tomatoes  # noqa: E402
from labelloop.model.store import ModelStore, project_key  # noqa: E402
from labelloop.scripts import projects  # noqa: E402
from labelloop.scripts.client import connect  # noqa: E402
from labelloop.scripts.stack import build_stack, start_stack  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "load.json"
SERVING_PROCESSES = 2
LOCUST_PYTHON = Path(os.environ.get("LABELLOOP_BENCH_PYTHON", ROOT / ".venv-bench" / "bin" / "python"))


def annotate(client, task):
    client.annotations.create(id=task.id, result=[{"from_name": "sentiment", "to_name": "text", "type": "choices",
                                                   "value": {"choices": [task.data["true_label"]]}}])


def warm_up(url: str, key: str, config: str, texts: list[str], *, requests_n: int = 48) -> None:
    """Concurrent /predict calls until every gunicorn worker has loaded the encoder (not measured)."""
    from concurrent.futures import ThreadPoolExecutor

    import requests

    def one(i):
        requests.post(f"{url}/predict", timeout=120, json={
            "project": key, "label_config": config, "tasks": [{"id": 0, "data": {"text": texts[i % len(texts)]}}]})

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(requests_n)))


def run_setup(replicas: int, *, users: int, seconds: float, console: Console) -> dict:
    state = Path(tempfile.mkdtemp(prefix=f"labelloop-load-{replicas}-"))
    stack = build_stack(state, replicas=replicas, workers_per_replica=max(1, SERVING_PROCESSES // replicas), trainers=1)
    try:
        with console.status(f"{replicas} replica(s): starting the stack") as status:
            start_stack(stack, progress=status.update)
            client = connect(stack.label_studio.url, stack.credentials.token)
            items = rotten_tomatoes(400, seed=3)
            project = projects.create_project(client, "load", "text_classification")
            projects.import_tasks(client, project.id, ({"text": it.text, "true_label": it.label} for it in items))
            projects.connect_backend(client, project.id, stack.backend_url)
            project = client.projects.get(id=project.id)
            key = project_key(project.id, project.created_at)
            tasks = list(projects.iter_tasks(client, project.id))
            status.update(f"{replicas} replica(s): 20 annotations and a first trained version")
            for task in tasks[:20]:
                annotate(client, task)
            store = ModelStore(stack.model_dir)
            deadline = time.monotonic() + 300
            while store.current_version(key) is None and time.monotonic() < deadline:
                time.sleep(0.5)
            first = store.current_version(key)
            status.update(f"{replicas} replica(s): warming every serving process")
            warm_up(stack.backend_url, key, project.label_config, [t.data["text"] for t in tasks])
            spec = state / "locust-tasks.json"
            spec.write_text(json.dumps({"key": key, "label_config": project.label_config,
                                        "texts": [t.data["text"] for t in tasks]}))

            stop = threading.Event()
            annotated = [0]

            def annotator():
                for task in tasks[20:]:
                    if stop.wait(2.0):
                        return
                    annotate(client, task)
                    annotated[0] += 1

            thread = threading.Thread(target=annotator, daemon=True)
            status.update(f"{replicas} replica(s): {users} Locust users for {seconds:.0f} s while annotations arrive")
            thread.start()
            done = subprocess.run([str(LOCUST_PYTHON), str(ROOT / "bench" / "locust_predict.py"), "--host",
                                   stack.backend_url, "--tasks", str(spec), "--users", str(users), "--seconds",
                                   str(seconds)], capture_output=True, text=True, timeout=seconds + 300)
            stop.set()
            thread.join(30)
        if done.returncode != 0:
            raise RuntimeError(f"locust failed:\n{done.stderr[-3000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        result.update(replicas=replicas, annotations_during=annotated[0], first_version=first,
                      last_version=store.current_version(key))
        return result
    finally:
        stack.stop()
        stack.remove_data()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    console = Console(width=120)
    if not LOCUST_PYTHON.is_file():
        raise SystemExit(f"Locust's environment is missing at {LOCUST_PYTHON}: run `make bench` (it creates .venv-bench)")
    results = [run_setup(n, users=args.users, seconds=args.seconds, console=console) for n in (1, 2)]
    table = Table("replicas x workers", "requests", "failures", "req/s", "p50 ms", "p95 ms", "p99 ms", "versions served",
                  "annotations meanwhile", title=f"/predict through nginx, {args.users} users, {args.seconds:.0f} s")
    for r in results:
        table.add_row(f"{r['replicas']} x {max(1, SERVING_PROCESSES // r['replicas'])}", str(r["requests"]), str(r["failures"]), f"{r['rps']:.1f}",
                      f"{r['p50_ms']:.0f}", f"{r['p95_ms']:.0f}", f"{r['p99_ms']:.0f}", str(len(r["versions"])),
                      str(r["annotations_during"]))
    console.print(table)
    one, two = results
    ratios = {"throughput": two["rps"] / one["rps"], "p95": two["p95_ms"] / max(one["p95_ms"], 1e-9)}
    console.print(f"two replicas ÷ one: throughput {ratios['throughput']:.2f}, p95 latency {ratios['p95']:.2f} "
                  f"(on {os.cpu_count()} cores; failures {one['failures']} and {two['failures']})")
    for r in results:
        if r["errors"]:
            console.print(f"[red]{r['replicas']} replica(s) errors:[/red] {r['errors']}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"users": args.users, "seconds": args.seconds, "results": results,
                                   "ratios_two_over_one": ratios}, indent=2))


if __name__ == "__main__":
    main()
