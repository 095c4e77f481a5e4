"""LLM drafts: /predict's overhead against the endpoint itself, and whether the score means something.

Runs llama.cpp's server with SmolLM2-135M-Instruct (the embedded default) on loopback, and the
labelloop backend pointed at it, with the product's defaults except where stated.

1. Throughput: the same prompts, greedy decoding (so the same tokens are generated), the same
   concurrency (LABELLOOP_LLM_CONCURRENCY, default 4):

       ratio = drafts/s through the backend's /predict (all drafted inline, fresh draft store)
               / drafts/s calling the server directly with the `openai` client   target >= 0.9

2. Score quality, on ChatterBot prompts with reference answers: the Spearman correlation between
   each draft's score (lower = ask a human first) and its similarity to the reference answer
   (cosine of all-MiniLM-L6-v2 embeddings), for the logprob score, the self-consistency score
   (k = 3, the default; logprobs off; on the first --consistency prompts, since it costs k
   completions each) and a random score (mean and spread over 200 draws).

Drafts use the product's defaults (256 tokens at most, temperature 0.2 for the quality part).
llama-cpp-python's server answers one request at a time, so on 2 CPU cores each draft takes
several seconds: the defaults below run for about 25 minutes.

Usage: python bench/llm_drafts.py [--throughput 16] [--quality 60] [--consistency 30] [--repeats 2]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import requests  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import Progress  # noqa: E402
from rich.table import Table  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from labelloop.label_config import load  # noqa: E402
from labelloop.model.datasets import chatterbot_conversations  # noqa: E402
from labelloop.model.embeddings import get_embedder  # noqa: E402
from labelloop.model.responses.llm import Drafter, LLMConfig  # noqa: E402
from labelloop.scripts.services import LLM_MODEL_ALIAS, backend_service, llm_service  # noqa: E402


def reference_pairs(n: int) -> list[tuple[str, str]]:
    pairs: dict[str, str] = {}
    for _, prompt, response in chatterbot_conversations():
        pairs.setdefault(prompt, response)
    items = list(pairs.items())
    rng = np.random.default_rng(0)
    return [items[i] for i in rng.permutation(len(items))[:n]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--throughput", type=int, default=16, help="prompts per throughput measurement")
    parser.add_argument("--quality", type=int, default=60, help="prompts with references for the correlation")
    parser.add_argument("--consistency", type=int, default=30, help="of those, prompts for self-consistency")
    parser.add_argument("--repeats", type=int, default=2, help="best of N for each throughput measurement")
    args = parser.parse_args()
    console = Console()
    defaults = LLMConfig()
    pairs = reference_pairs(args.quality + args.repeats * args.throughput)
    config_xml = load("llm_fine_tuning")

    with tempfile.TemporaryDirectory() as tmp:
        llm = llm_service(Path(tmp) / "llama.log")
        with console.status("starting llama.cpp's server"):
            llm.start(timeout=120)
        env = {"LABELLOOP_LLM_BASE_URL": llm.url + "/v1", "LABELLOOP_LLM_MODEL": LLM_MODEL_ALIAS,
               "LABELLOOP_LLM_TEMPERATURE": "0", "LABELLOOP_LLM_MAX_INLINE": str(args.throughput)}
        backend = backend_service(Path(tmp) / "models", extra_env=env)
        try:
            with console.status("starting the backend"):
                backend.start(timeout=180)
            config = dataclasses.replace(defaults, base_url=llm.url + "/v1", model=LLM_MODEL_ALIAS, temperature=0.0)
            direct = Drafter(config)
            direct.draft_many([[{"role": "user", "content": "Hello"}]])  # warm the server

            # 1. throughput: fresh prompts for each run, so neither side reads a stored draft
            rows = {"direct": [], "predict": []}
            offset = args.quality
            for r in range(args.repeats):
                console.log(f"throughput, round {r + 1} of {args.repeats}: {args.throughput} prompts each way")
                prompts = [p for p, _ in pairs[offset:offset + args.throughput]]
                offset += args.throughput
                t = time.perf_counter()
                drafts = direct.draft_many([[{"role": "user", "content": p}] for p in prompts])
                rows["direct"].append(len(prompts) / (time.perf_counter() - t))
                assert all(d.error is None for d in drafts), [d.error for d in drafts if d.error]
                tasks = [{"id": i, "data": {"prompt": p}} for i, p in enumerate(prompts)]
                requests.post(f"{backend.url}/setup", json={"project": f"{r + 1}.1", "schema": config_xml},
                              timeout=30).raise_for_status()
                t = time.perf_counter()
                response = requests.post(f"{backend.url}/predict", data=json.dumps(
                    {"tasks": tasks, "project": f"{r + 1}.1", "label_config": config_xml}),
                    headers={"Content-Type": "application/json"}, timeout=600)
                rows["predict"].append(len(prompts) / (time.perf_counter() - t))
                response.raise_for_status()
                assert all(response.json()["results"]), "every task should be drafted inline"

            # 2. score quality
            quality = pairs[:args.quality]
            messages = [[{"role": "user", "content": p}] for p, _ in quality]
            embed = get_embedder().embed
            with Progress(console=console, transient=True) as progress:
                bar = progress.add_task("logprob drafts", total=len(messages))
                scored = Drafter(dataclasses.replace(config, temperature=defaults.temperature)).draft_many(
                    messages, progress=lambda n: progress.advance(bar, n))
                subset = messages[:args.consistency]
                bar = progress.add_task(f"self-consistency drafts (k={defaults.samples})", total=len(subset))
                consistent = Drafter(dataclasses.replace(config, temperature=defaults.temperature, logprobs=False),
                                     embed=embed).draft_many(subset, progress=lambda n: progress.advance(bar, n))
        finally:
            backend.stop()
            llm.stop()

    references = embed([r for _, r in quality])
    table = Table(title=f"LLM drafts: SmolLM2-135M-Instruct (Q4_1) on llama.cpp, {os.cpu_count()} CPUs")
    table.add_column("measure")
    table.add_column("value", justify="right")
    best_direct, best_predict = max(rows["direct"]), max(rows["predict"])
    table.add_row("drafts/s, direct (openai client, concurrency 4)", f"{best_direct:.2f}")
    table.add_row("drafts/s, through /predict", f"{best_predict:.2f}")
    table.add_row("ratio /predict / direct (target >= 0.9)", f"{best_predict / best_direct:.2f}")
    rng = np.random.default_rng(0)
    for name, drafts in (("logprobs", scored), (f"self-consistency k={defaults.samples}", consistent)):
        ok = [i for i, d in enumerate(drafts) if d.error is None and d.text.strip()]
        similarity = np.sum(embed([drafts[i].text for i in ok]) * references[ok], axis=1)  # unit vectors
        rho = spearmanr([drafts[i].score for i in ok], similarity).statistic
        random_rho = [spearmanr(rng.random(len(ok)), similarity).statistic for _ in range(200)]
        table.add_row(f"Spearman(score, similarity to reference), {name}, n={len(ok)}", f"{rho:+.3f}")
        table.add_row("  random score, mean ± sd over 200 draws", f"{np.mean(random_rho):+.3f} ± {np.std(random_rho):.3f}")
    console.print(table)


if __name__ == "__main__":
    main()
