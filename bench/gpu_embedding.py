"""Embedding on a GPU: the product's encoder against a bare transformers loop, in the same run.

Issue 16 asks, on the lent H100, for the product's embedding throughput divided by the figure of
a bare ``transformers`` loop. Two bare loops are timed, both fp32, 64 texts a batch, in the
texts' own order (what a user writes first):

- ``bare loop``: ``tokenizer(batch, padding=True)``, ``model(**inputs)``, mean pooling and L2
  normalisation, rows back to the host;
- ``raw forward``: the forward pass alone, the batches tokenised and moved to the device
  beforehand (the ceiling of that loop).

The product's host side alone (tokenising and padding, `token_batches`) is timed too: on a GPU
it bounds what the encoder can do. Then `labelloop.model.embeddings.TransformerEncoder`, which batches texts by their number of
pieces, as the product builds it on this machine (``default``) and with bf16 weights and larger
batches. Each row: texts/s (best of ``--repeats`` after a warm-up, the device synchronised),
the ratio to each bare loop, the cosine of its rows to the bare loop's, and the test accuracy of
the classification head trained on its embeddings (Rotten Tomatoes, 3,000 to train, 1,000 to
test). Two sets of texts: Rotten Tomatoes snippets (short) and BBC News articles (long,
truncated at 256 pieces).

Runs on a CPU too (slowly; ``--limit`` fewer texts), where the default is the bf16 encoder.

Usage: python bench/gpu_embedding.py [--model PATH] [--texts FILE.json] [--limit N] [--repeats 3] [--json OUT]
       python bench/gpu_embedding.py --dump FILE.json   # write the texts, for a machine without the data packages
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from labelloop.model.embeddings import (TransformerEncoder, resolve_model_path, runtime_from_env,  # noqa: E402
                                        token_batches)

RESULTS = Path(__file__).resolve().parent / "results" / "gpu_embedding.json"
MAX_LENGTH = 256
BARE_BATCH = 64
SOURCES = {"short": "Rotten Tomatoes", "long": "BBC News"}


def load_texts(path: str | None) -> dict:
    """``{"short": {"texts", "labels"}, "long": {"texts"}}`` from a dump or the offline datasets."""
    if path:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    from labelloop.model.datasets import bbc_news, rotten_tomatoes

    short = rotten_tomatoes(None, seed=7)
    return {"short": {"texts": [it.text for it in short], "labels": [it.label for it in short]},
            "long": {"texts": [it.text for it in bbc_news()]}}


def synchronised(device: str):
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def best_of(fn, repeats: int, device: str) -> tuple[float, object]:
    """(fastest seconds, last result) over ``repeats`` calls after one untimed warm-up."""
    result = fn()
    best = float("inf")
    for _ in range(repeats):
        synchronised(device)
        start = time.perf_counter()
        result = fn()
        synchronised(device)
        best = min(best, time.perf_counter() - start)
    return best, result


class BareLoop:
    """The loop a user writes first: tokenise each batch with padding, forward, pool."""

    def __init__(self, path: str, device: str):
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).to(device).eval()
        self.device = device

    def batches(self, texts):
        for start in range(0, len(texts), BARE_BATCH):
            yield self.tokenizer(texts[start:start + BARE_BATCH], padding=True, truncation=True,
                                 max_length=MAX_LENGTH, return_tensors="pt")

    def encode(self, texts) -> np.ndarray:
        import torch

        rows = []
        with torch.inference_mode():
            for inputs in self.batches(texts):
                inputs = inputs.to(self.device)
                hidden = self.model(**inputs).last_hidden_state
                mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                rows.append(torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy())
        return np.vstack(rows)

    def forward_only(self, texts):
        """A callable running only the forward passes, over batches prepared on the device now."""
        import torch

        prepared = [inputs.to(self.device) for inputs in self.batches(texts)]

        def run():
            with torch.inference_mode():
                for inputs in prepared:
                    self.model(**inputs)
        return run


def head_accuracy(X: np.ndarray, labels: list) -> float:
    from labelloop.model.classification.classifier import EmbeddingClassifier

    y = np.asarray(labels)
    head = EmbeddingClassifier().fit(X[1000:4000], y[1000:4000])
    return float((head.predict(X[4000:5000]) == y[4000:5000]).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default", help="encoder: 'default' (the offline MiniLM) or a path")
    parser.add_argument("--texts", help="a JSON file written by --dump (default: the offline datasets)")
    parser.add_argument("--dump", help="write the texts to this JSON file and stop")
    parser.add_argument("--limit", type=int, help="at most this many texts of each set")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=str(RESULTS), help="where the figures are written")
    args = parser.parse_args()
    console = Console(width=150)
    data = load_texts(args.texts)
    if args.dump:
        Path(args.dump).write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        console.print(f"wrote {args.dump}")
        return

    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    path = resolve_model_path(args.model)
    bare = BareLoop(path, device)
    default = runtime_from_env()  # the torch runtimes only: ONNX Runtime is timed on the CPU by bench/scale.py
    product = TransformerEncoder(path, bfloat16=default == "torch-bf16")
    variants = {f"product default ({default}, batch {product.batch_size})": product}
    for batch in (64, 256, 1024):
        variants[f"product fp32, batch {batch}"] = TransformerEncoder(path, batch_size=batch)
        variants[f"product bf16, batch {batch}"] = TransformerEncoder(path, batch_size=batch, bfloat16=True)

    results = {"device": name, "sets": {}}
    for set_name, entry in data.items():
        texts = entry["texts"][:args.limit] if args.limit else entry["texts"]
        labels = entry.get("labels")
        labels = labels[:len(texts)] if labels else None
        rows = []
        with console.status(f"{set_name}: bare loop"):
            bare_s, reference = best_of(lambda: bare.encode(texts), args.repeats, device)
            raw_s, _ = best_of(bare.forward_only(texts), args.repeats, device)
        rows.append({"encoder": "bare loop (fp32, batch 64)", "seconds": bare_s, "cosine_min": 1.0,
                     "accuracy": head_accuracy(reference, labels) if labels and len(texts) >= 5000 else None})
        rows.append({"encoder": "raw forward only (fp32, batch 64)", "seconds": raw_s})
        host_s, _ = best_of(lambda: list(token_batches(bare.tokenizer, texts, batch_size=64, max_length=MAX_LENGTH)),
                            args.repeats, "cpu")
        rows.append({"encoder": "the product's host side only (tokenise, pad)", "seconds": host_s})
        for label, encoder in variants.items():
            with console.status(f"{set_name}: {label}"):
                seconds, X = best_of(lambda: encoder.encode(texts), args.repeats, device)
            rows.append({"encoder": label, "seconds": seconds, "cosine_min": float((X * reference).sum(1).min()),
                         "accuracy": head_accuracy(X, labels) if labels and len(texts) >= 5000 else None})
        table = Table("encoder", "texts/s", "÷ bare loop", "÷ raw forward", "cosine min to bare", "head accuracy",
                      title=f"{name}: {len(texts):,} {set_name} texts ({SOURCES.get(set_name, set_name)})")
        for row in rows:
            row["texts_per_s"] = len(texts) / row["seconds"]
            table.add_row(row["encoder"], f"{row['texts_per_s']:,.0f}", f"{bare_s / row['seconds']:.2f}",
                          f"{raw_s / row['seconds']:.2f}",
                          f"{row['cosine_min']:.5f}" if "cosine_min" in row else "",
                          f"{row['accuracy']:.3f}" if row.get("accuracy") is not None else "")
        console.print(table)
        results["sets"][set_name] = {"texts": len(texts), "rows": rows}
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2), encoding="utf-8")
    console.print(f"results: {out}")


if __name__ == "__main__":
    main()
