"""Export throughput and peak memory: N synthetic prompt/response annotations from a local snapshot.

A snapshot in `labelloop sync`'s layout (Label Studio task JSON) is written to a temp dir: N
tasks of the Supervised LLM Fine-tuning template, each with one finished annotation. Prompts
pair the first 12 words of two real Rotten Tomatoes snippets; 1% are near-duplicates of another task (upper-cased,
with a changed response) and 0.5% exact copies. `labelloop export`
then runs on it (``openai-chat``), with no Label Studio involved.

Printed: end-to-end examples/s and peak RSS; the time of each step, with embedding, near-duplicate
grouping (k-NN graph) and the split apart; and the ratio of the export's throughput, without
embedding, to a baseline measured in the same process: the hand-written loop the issue describes
(read the snapshot, write one chat line per annotation, no cleaning, no deduplication, no split,
no validation). Run at 10k, 30k and 100k (each embedding into a fresh cache), with a table of
each step's growth exponent, so that a step growing faster than n log n shows.

Usage: python bench/export.py [--sizes 10000 30000 100000] (one size: no growth table)
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from labelloop.label_config import load  # noqa: E402
from labelloop.model.datasets import rotten_tomatoes  # noqa: E402
from labelloop.model.store import atomic_write_text  # noqa: E402
from labelloop.scripts.export import ExportOptions, export_snapshot  # noqa: E402
from labelloop.scripts.sync import ProjectSnapshot  # noqa: E402



def write_snapshot(root: Path, n: int, seed: int = 0) -> ProjectSnapshot:
    """Prompts pair two real Rotten Tomatoes snippets, so they are as varied as real text."""
    rng = np.random.default_rng(seed)
    snippets = [" ".join(item.text.split()[:12]) for item in rotten_tomatoes()]  # short prompts: embedding dominates
    snapshot = ProjectSnapshot(root, 1)
    snapshot.dir.mkdir(parents=True)
    pairs = []
    for i in range(n):
        r = rng.random()
        if pairs and r < 0.01:
            prompt, response = pairs[rng.integers(len(pairs))]
            pairs.append((prompt.upper(), response + " Also worth noting."))  # near-duplicate (uncased encoder)
        elif pairs and r < 0.015:
            pairs.append(pairs[rng.integers(len(pairs))])                     # exact duplicate
        else:
            a, b = rng.integers(len(snippets), size=2)
            pairs.append((f"Which of these two reviews is more positive, and why?\nA: {snippets[a]}\nB: {snippets[b]}",
                          f"Review {'A' if rng.random() < 0.5 else 'B'} is more positive. " * int(rng.integers(1, 4))
                          + f"It says: {snippets[a if rng.random() < 0.5 else b]}"))
    with open(snapshot.tasks_path, "w", encoding="utf-8") as f:
        for i, (prompt, response) in enumerate(pairs, start=1):
            f.write(json.dumps({"id": i, "data": {"prompt": prompt}, "annotations": [{
                "id": i, "completed_by": 1, "was_cancelled": False, "updated_at": "2026-01-01T00:00:00Z",
                "result": [{"from_name": "response", "to_name": "prompt", "type": "textarea",
                            "value": {"text": [response]}}]}]}) + "\n")
    atomic_write_text(snapshot.state_path, json.dumps({"project_id": 1, "label_config": load("llm_fine_tuning")}))
    return snapshot


def naive_loop(snapshot: ProjectSnapshot, out: Path) -> int:
    """The baseline: one chat line per annotation, nothing checked."""
    count = 0
    with open(out, "w", encoding="utf-8") as f:
        for task in snapshot.tasks().values():
            for annotation in task["annotations"]:
                text = "\n".join(annotation["result"][0]["value"]["text"])
                f.write(json.dumps({"messages": [{"role": "user", "content": task["data"]["prompt"]},
                                                 {"role": "assistant", "content": text}]}) + "\n")
                count += 1
    return count


def run(console: Console, n: int) -> dict:
    """One export of ``n`` annotations, with a fresh embedding cache (every prompt is embedded)."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["LABELLOOP_EMBEDDING_CACHE"] = str(tmp / "embeddings")
        from labelloop.model import embeddings

        embeddings.forget_embedders()  # the next embedder opens this run's empty cache
        t = time.perf_counter()
        snapshot = write_snapshot(tmp / "snapshots", n)
        console.print(f"snapshot of {n} annotated tasks written in {time.perf_counter() - t:.1f} s")

        t = time.perf_counter()
        naive_n = naive_loop(snapshot, tmp / "naive.jsonl")
        naive_s = time.perf_counter() - t

        t = time.perf_counter()
        result = export_snapshot(snapshot, tmp / "out", ExportOptions("openai-chat"))
        total_s = time.perf_counter() - t
        peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2

    manifest = result.manifest
    exported = sum(c["examples"] for c in manifest["counts"].values())
    table = Table(title=f"export of {n} prompt/response annotations (openai-chat)")
    table.add_column("step")
    table.add_column("seconds", justify="right")
    for step, seconds in result.seconds.items():
        table.add_row(step, f"{seconds:.1f}")
    table.add_row("total", f"{total_s:.1f}")
    console.print(table)
    without_embedding = total_s - result.seconds.get("embed", 0.0)
    per_split = ", ".join(f"{name} {c['examples']}" for name, c in manifest["counts"].items())
    dups = manifest["near_duplicates"]
    console.print(f"exported {exported} examples ({per_split}); "
                  f"dropped {sum(len(v) for v in manifest['dropped'].values())}; near-duplicate pairs "
                  f"{dups['pairs']}, across splits {dups['cross_split_pairs']} "
                  f"(random split: {dups['cross_split_pairs_random_split']}); "
                  f"tokens counted with {manifest['tokens']['tokenizer']}")
    console.print(f"throughput: {n / total_s:.0f} examples/s end to end, {n / without_embedding:.0f}/s "
                  f"without embedding ({without_embedding:.1f} s; target at 100k: < 60 s); peak RSS {peak_gb:.2f} GB "
                  "(the process's, so far)")
    console.print(f"baseline hand-written loop: {naive_n / naive_s:.0f} examples/s; export without embedding ÷ "
                  f"baseline = {naive_s / without_embedding:.3f} (the price of cleaning, dedup, split and validation)")
    return {"n": n, **result.seconds, "without_embedding": without_embedding, "total": total_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000],
                        help="annotation counts, e.g. 10000 30000 100000 for the growth of each step")
    args = parser.parse_args()
    console = Console()
    rows = [run(console, n) for n in args.sizes]
    if len(rows) < 2:
        return
    steps = [k for k in rows[-1] if k != "n"]
    table = Table(*["step"] + [f"{r['n']:,} s" for r in rows] + [f"growth {a['n'] // 1000}k→{b['n'] // 1000}k"
                                                                  for a, b in zip(rows, rows[1:])],
                  title="cost growth (time ∝ n^e; above ~1.1 grows faster than n log n)")
    for step in steps:
        growth = [math.log(b[step] / a[step]) / math.log(b["n"] / a["n"]) if a.get(step, 0) > 0.05 and b.get(step, 0) > 0
                  else float("nan") for a, b in zip(rows, rows[1:])]
        table.add_row(step, *[f"{r.get(step, 0):.1f}" for r in rows], *[f"e={g:.2f}" if g == g else "-" for g in growth])
    console.print(table)


if __name__ == "__main__":
    main()
