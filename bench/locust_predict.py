"""Locust users on /predict, headless through Locust's Python API; prints one JSON line of stats.

Run by `bench/load.py` with the Python of .venv-bench (Locust needs a newer Flask than the
backend's own environment allows). Annotators open one task at a time (Label Studio sends one
task per /predict); now and then someone retrieves predictions for a page of 20.

Usage: python bench/locust_predict.py --host URL --tasks tasks.json --users 8 --seconds 60
"""
from __future__ import annotations

import argparse
import json
import random
from collections import Counter

import gevent
from locust import HttpUser, between, task
from locust.env import Environment


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", required=True)
    parser.add_argument("--tasks", required=True, help="JSON: project key, label config, texts")
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    spec = json.loads(open(args.tasks, encoding="utf-8").read())
    versions: Counter = Counter()

    class Annotator(HttpUser):
        wait_time = between(0.05, 0.3)

        def post(self, n: int) -> None:
            texts = random.sample(spec["texts"], n)
            body = {"project": spec["key"], "label_config": spec["label_config"],
                    "tasks": [{"id": i, "data": {"text": t}} for i, t in enumerate(texts)]}
            with self.client.post("/predict", json=body, name=f"/predict x{n}", catch_response=True,
                                  timeout=120) as response:
                if response.status_code != 200:
                    response.failure(f"{response.status_code}: {response.text[:200]}")
                    return
                answer = response.json()
                if len(answer.get("results", ())) != n:
                    response.failure("wrong number of results")
                    return
                versions[answer["model_version"]] += 1

        @task(9)
        def open_one_task(self):
            self.post(1)

        @task(1)
        def retrieve_a_page(self):
            self.post(20)

    env = Environment(user_classes=[Annotator], host=args.host)
    runner = env.create_local_runner()
    runner.start(args.users, spawn_rate=args.users)
    gevent.spawn_later(args.seconds, runner.quit)
    runner.greenlet.join()
    total = env.stats.total
    print(json.dumps({
        "requests": total.num_requests, "failures": total.num_failures,
        "rps": total.num_requests / max(args.seconds, 1e-9),
        "p50_ms": total.get_response_time_percentile(0.5), "p95_ms": total.get_response_time_percentile(0.95),
        "p99_ms": total.get_response_time_percentile(0.99),
        "errors": [f"{e.name}: {e.error}" for e in env.stats.errors.values()][:5],
        "versions": dict(versions)}))


if __name__ == "__main__":
    main()
