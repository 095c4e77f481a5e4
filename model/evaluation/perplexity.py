"""Perplexity of reference answers under a local causal model in GGUF, through llama.cpp.

The model reads each prompt (formatted with the GGUF's own chat template, as llama.cpp's server
formats it) followed by the reference answer, and the log-probabilities of the answer's tokens
give ``perplexity = exp(total negative log-likelihood / answer tokens)``. It runs in the Python
that has ``llama_cpp`` (the one llama.cpp's server runs in), as a child process.

Why not the server's ``/v1/completions`` with ``echo`` and ``logprobs``: llama-cpp-python 0.3.36
reports each echoed token's log-probability from the distribution *after* that token (off by one),
so the values are not the reference's likelihood. Here the scores are read straight from the logits.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .metrics import EvaluationError

_SCORER = r"""
import json, sys
import numpy as np
from llama_cpp import Llama
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

job = json.loads(sys.stdin.readline())
llm = Llama(model_path=job["model"], n_ctx=job["n_ctx"], logits_all=True, verbose=False)
template = llm.metadata.get("tokenizer.chat_template")
bos = llm.detokenize([llm.token_bos()]).decode("utf-8", "ignore")
eos = llm.detokenize([llm.token_eos()]).decode("utf-8", "ignore")
formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos) if template else None
for messages, reference in job["pairs"]:
    if formatter is not None:
        context = formatter(messages=messages).prompt
    else:
        context = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant: "
    ctx = llm.tokenize(context.encode("utf-8"), add_bos=True, special=True)
    ref = llm.tokenize(reference.encode("utf-8"), add_bos=False, special=False)
    ref = ref[: job["n_ctx"] - 2]
    ctx = ctx[-(job["n_ctx"] - len(ref)):]  # keep the end of a long prompt
    tokens = ctx + ref
    llm.reset()
    llm.eval(tokens)
    logits = np.asarray(llm.scores[: len(tokens)], dtype=np.float64)
    rows = logits[len(ctx) - 1: len(tokens) - 1]
    top = rows.max(axis=1, keepdims=True)
    logz = (top + np.log(np.exp(rows - top).sum(axis=1, keepdims=True))).ravel()
    nll = float((logz - rows[np.arange(len(ref)), ref]).sum())
    print(json.dumps({"nll": nll, "tokens": len(ref)}), flush=True)
"""


def reference_perplexity(prompts: Sequence[Sequence[dict]], references: Sequence[str], *, model_path: str | Path,
                         python: str, n_ctx: int = 2048, progress: Callable[[int], None] | None = None) -> dict:
    """``{"perplexity", "tokens", "per_example": (n,) perplexities}`` of ``references`` given
    ``prompts`` (chat messages, ``[{"role", "content"}, ...]`` each) under the GGUF at
    ``model_path``, scored by ``python`` (which must import ``llama_cpp``).

    Raises `EvaluationError` when the child fails (missing module or model, unreadable GGUF)."""
    if len(prompts) != len(references):
        raise EvaluationError(f"{len(prompts)} prompts for {len(references)} references")
    if not Path(model_path).is_file():
        raise EvaluationError(f"no GGUF model at {model_path}")
    job = {"model": str(model_path), "n_ctx": int(n_ctx),
           "pairs": [[list(p), str(r)] for p, r in zip(prompts, references) if str(r)]}
    child = subprocess.Popen([python, "-c", _SCORER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    child.stdin.write(json.dumps(job) + "\n")
    child.stdin.close()
    rows = []
    for line in child.stdout:
        rows.append(json.loads(line))
        if progress:
            progress(1)
    child.wait()
    if child.returncode != 0 or len(rows) != len(job["pairs"]):
        tail = child.stderr.read().strip().splitlines()[-3:]
        raise EvaluationError(f"scoring with {model_path} failed: {' '.join(tail) or f'exit {child.returncode}'}")
    nll = np.array([r["nll"] for r in rows])
    tokens = np.array([r["tokens"] for r in rows])
    return {"perplexity": float(np.exp(nll.sum() / max(tokens.sum(), 1))), "tokens": int(tokens.sum()),
            "model": Path(model_path).name,
            "per_example": [float(v) for v in np.exp(nll / np.maximum(tokens, 1))]}
