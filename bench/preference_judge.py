"""Preference-pair prelabels: the judge's cost through /predict, and whether asking both orders pays.

Runs llama.cpp's server with SmolLM2-135M-Instruct (the embedded default) on loopback and the
labelloop backend pointed at it, with the product's defaults. The pairs come from ChatterBot
conversations: a prompt, its own answer and the answer to another prompt, the real answer first
in half of them at random. A judge should prefer the real answer.

1. Throughput, the same pairs each way, the same concurrency (LABELLOOP_LLM_CONCURRENCY, 4):

       ratio = verdicts/s through the backend's /predict (fresh verdict store, all inline)
               / verdicts/s from the same two requests per pair sent directly      target >= 0.9

2. Quality: the share of pairs whose real answer is picked, by the shipped judge (both orders,
   through /predict) against the same judge asked in one order only (the first request of each
   pair) and against chance (0.5); and the shipped judge's share among its more and less
   confident halves, to see whether the score sorts its verdicts.

With ``--endpoint`` (and ``--model``, ``--api-key``) it measures that OpenAI-compatible endpoint
instead of starting SmolLM2: the way to see whether a judge is worth its prelabels.

Usage: python bench/preference_judge.py [--pairs 100] [--seed 0] [--endpoint URL --model NAME [--api-key KEY]]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import openai  # noqa: E402
import requests  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from labelloop.label_config import load  # noqa: E402
from labelloop.model.datasets import chatterbot_conversations  # noqa: E402
from labelloop.model.responses.llm import LLMConfig  # noqa: E402
from labelloop.model.responses.pairs import one_better, pair_messages  # noqa: E402
from labelloop.scripts.services import LLM_MODEL_ALIAS, backend_service, llm_service  # noqa: E402


def pairs_from_conversations(n: int, seed: int) -> list[tuple[str, str, str, bool]]:
    """``(prompt, first, second, real answer is first)``: a prompt's own answer against another's."""
    answers: dict[str, str] = {}
    for _, prompt, response in chatterbot_conversations():
        if response.strip() and prompt.strip():
            answers.setdefault(prompt, response)
    items = list(answers.items())
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(items))[:n]
    out = []
    for k, i in enumerate(order):
        prompt, real = items[i]
        other = items[order[(k + 1) % len(order)]][1]
        if other.strip() == real.strip():
            continue
        first = bool(rng.random() < 0.5)
        out.append((prompt, real, other, True) if first else (prompt, other, real, False))
    return out


def ask_directly(client, model: str, pairs, concurrency: int) -> list[tuple[float | None, float | None]]:
    """``P(first better)`` from each order's single request, as the product sends them."""
    def one(messages):
        choice = client.chat.completions.create(model=model, messages=messages, temperature=0.0,
                                                max_tokens=4, logprobs=True, top_logprobs=20).choices[0]
        top = {t.token: t.logprob for t in choice.logprobs.content[0].top_logprobs} if choice.logprobs else None
        verdict = one_better(choice.message.content or "", top)
        return None if verdict is None else verdict[0]

    requests_ = [pair_messages(p, a, b) for p, a, b, _ in pairs] + [pair_messages(p, b, a) for p, a, b, _ in pairs]
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        answers = list(pool.map(one, requests_))
    return list(zip(answers[:len(pairs)], answers[len(pairs):]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--endpoint", help="an OpenAI-compatible base URL to judge with (default: SmolLM2 here)")
    parser.add_argument("--model", default=LLM_MODEL_ALIAS, help="the model name the endpoint serves")
    parser.add_argument("--api-key", default=os.environ.get("LABELLOOP_LLM_API_KEY", "unused"))
    args = parser.parse_args()
    console = Console()
    pairs = pairs_from_conversations(args.pairs, args.seed)
    schema = load("llm_preference")
    concurrency = LLMConfig().concurrency

    with tempfile.TemporaryDirectory() as tmp:
        llm = None if args.endpoint else llm_service(Path(tmp) / "llama.log")
        base_url = args.endpoint or llm.url + "/v1"
        with console.status("starting llama.cpp's server") if llm else nullcontext():
            if llm:
                llm.start(timeout=120)
        env = {"LABELLOOP_LLM_BASE_URL": base_url, "LABELLOOP_LLM_MODEL": args.model,
               "LABELLOOP_LLM_API_KEY": args.api_key, "LABELLOOP_LLM_MAX_INLINE": str(len(pairs))}
        backend = backend_service(Path(tmp) / "models", extra_env=env)
        try:
            with console.status("starting the backend"):
                backend.start(timeout=180)
            client = openai.OpenAI(base_url=base_url, api_key=args.api_key)
            ask_directly(client, args.model, pairs[:2], concurrency)  # warm the server
            console.log(f"{len(pairs)} pairs directly, {2 * len(pairs)} requests")
            t = time.perf_counter()
            direct = ask_directly(client, args.model, pairs, concurrency)
            direct_rate = len(pairs) / (time.perf_counter() - t)
            requests.post(f"{backend.url}/setup", json={"project": "1.1", "schema": schema},
                          timeout=30).raise_for_status()
            tasks = [{"id": i, "data": {"prompt": p, "answer1": a, "answer2": b}} for i, (p, a, b, _) in enumerate(pairs)]
            console.log(f"{len(pairs)} pairs through /predict")
            t = time.perf_counter()
            response = requests.post(f"{backend.url}/predict", data=json.dumps(
                {"tasks": tasks, "project": "1.1", "label_config": schema}),
                headers={"Content-Type": "application/json"}, timeout=1800)
            predict_rate = len(pairs) / (time.perf_counter() - t)
            response.raise_for_status()
            results = response.json()["results"]
        finally:
            backend.stop()
            if llm:
                llm.stop()

    truth = np.array([real_first for *_, real_first in pairs])
    judged = [i for i, r in enumerate(results) if r and r["result"]]
    picked_first = np.array([results[i]["result"][0]["value"]["choices"][0] == "answer1" for i in judged])
    confidence = np.array([results[i]["score"] for i in judged])
    shipped = picked_first == truth[judged]
    single = [(i, p) for i, (p, _) in enumerate(direct) if p is not None]
    single_right = np.array([(p >= 0.5) == truth[i] for i, p in single])
    said_first = np.mean([p >= 0.5 for _, p in single])
    rng = np.random.default_rng(args.seed)
    boot = [rng.choice(shipped, len(shipped)).mean() for _ in range(1000)]
    high = confidence >= np.median(confidence)

    judge = f"{args.model} at {args.endpoint}" if args.endpoint else "SmolLM2-135M-Instruct on llama.cpp"
    table = Table(title=f"Preference judge: {judge}, {len(pairs)} ChatterBot pairs, {os.cpu_count()} CPUs")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row(f"verdicts/s, direct (2 requests each, concurrency {concurrency})", f"{direct_rate:.2f}")
    table.add_row("verdicts/s, through /predict", f"{predict_rate:.2f}")
    table.add_row("ratio /predict / direct (target >= 0.9)", f"{predict_rate / direct_rate:.2f}")
    table.add_row(f"real answer picked, both orders (shipped), n={len(judged)}",
                  f"{shipped.mean():.3f} (95% {np.percentile(boot, 2.5):.3f}-{np.percentile(boot, 97.5):.3f})")
    table.add_row(f"real answer picked, one order, n={len(single)}", f"{single_right.mean():.3f}")
    table.add_row("  share of one-order verdicts for the first answer", f"{said_first:.3f}")
    table.add_row("real answer picked by chance", "0.500")
    table.add_row("shipped, the more confident half", f"{shipped[high].mean():.3f}")
    table.add_row("shipped, the less confident half", f"{shipped[~high].mean():.3f}")
    table.add_row("median confidence (the score)", f"{np.median(confidence):.3f}")
    console.print(table)


if __name__ == "__main__":
    main()
