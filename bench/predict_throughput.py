"""Backend /predict throughput over HTTP against the raw batched model forward, in one run.

Same encoder (the offline all-MiniLM-L6-v2 unless --model-name), same encoder batch size, same
texts. The backend is warm (weights loaded) but has never seen the measured texts, so every
text is an embedding-cache miss. Printed ratios:

    batched   = backend tasks/s (all tasks in one /predict, as Label Studio sends them)
                / raw forward texts/s                               target >= 0.85
    one-by-one = backend tasks/s with one task per request (an annotator opening tasks)
                / raw forward texts/s; also against a one-text-per-call raw forward, which
                isolates the per-request overhead of HTTP and the backend

Usage: python bench/predict_throughput.py [--tasks 2000] [--single 200]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import requests  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from labelloop.label_config import load  # noqa: E402
from labelloop.model.datasets import rotten_tomatoes  # noqa: E402
from labelloop.model.embeddings import TransformerEncoder  # noqa: E402
from labelloop.scripts.services import backend_service  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=2000, help="tasks in the batched request")
    parser.add_argument("--single", type=int, default=200, help="one-task requests")
    parser.add_argument("--model-name", default="default")
    parser.add_argument("--repeats", type=int, default=2, help="best of N for each measurement")
    args = parser.parse_args()
    console = Console()

    texts = [item.text for item in rotten_tomatoes()]
    need = 100 + args.repeats * (args.tasks + args.single)
    if len(texts) < need:
        raise SystemExit(f"only {len(texts)} texts for {need} needed; lower --tasks/--single/--repeats")
    warmup, rest = texts[:100], texts[100:]
    config = load("text_classification")

    encoder = TransformerEncoder(args.model_name)
    encoder.encode(warmup)

    with tempfile.TemporaryDirectory() as tmp:
        backend = backend_service(Path(tmp), model_name=args.model_name)
        with console.status("starting the backend"):
            backend.start(timeout=180)
        session = requests.Session()

        def post(chunk):
            tasks = [{"id": i, "data": {"text": t}} for i, t in enumerate(chunk)]
            response = session.post(f"{backend.url}/predict", data=json.dumps(
                {"tasks": tasks, "project": "1.1", "label_config": config}),
                headers={"Content-Type": "application/json"}, timeout=600)
            response.raise_for_status()
            assert len(response.json()["results"]) == len(chunk)

        try:
            post(warmup)  # loads weights and label embeddings
            raw, raw_one, batched, single = [], [], [], []
            offset = 0
            for _ in range(args.repeats):
                chunk = rest[offset:offset + args.tasks]
                ones = rest[offset + args.tasks:offset + args.tasks + args.single]
                offset += args.tasks + args.single

                t = time.perf_counter()
                encoder.encode(chunk)
                raw.append(len(chunk) / (time.perf_counter() - t))

                t = time.perf_counter()
                post(chunk)
                batched.append(len(chunk) / (time.perf_counter() - t))

                t = time.perf_counter()
                for text in ones:
                    encoder.encode([text])
                raw_one.append(len(ones) / (time.perf_counter() - t))

                t = time.perf_counter()
                for text in ones:
                    post([text])
                single.append(len(ones) / (time.perf_counter() - t))
        finally:
            backend.stop()

    raw_best, batched_best, single_best = max(raw), max(batched), max(single)
    raw_one_best = max(raw_one)
    table = Table(title=f"/predict throughput, encoder batch {encoder.batch_size}, "
                        f"{args.tasks} tasks per batched request (best of {args.repeats})")
    table.add_column("measurement")
    table.add_column("texts/s", justify="right")
    table.add_column("ratio to raw forward", justify="right")
    table.add_row("raw batched model forward", f"{raw_best:.1f}", "1.00")
    table.add_row("backend /predict, one request", f"{batched_best:.1f}", f"{batched_best / raw_best:.2f}")
    table.add_row("backend /predict, one task per request", f"{single_best:.1f}", f"{single_best / raw_best:.2f}")
    table.add_row("raw model forward, one text per call", f"{raw_one_best:.1f}", f"{raw_one_best / raw_best:.2f}")
    console.print(table)
    verdict = "meets" if batched_best / raw_best >= 0.85 else "MISSES"
    console.print(f"batched ratio {batched_best / raw_best:.2f} {verdict} the 0.85 target; "
                  f"one-by-one ratio {single_best / raw_best:.2f} (against a one-text forward: "
                  f"{single_best / raw_one_best:.2f}, the HTTP and backend overhead per request)")


if __name__ == "__main__":
    main()
