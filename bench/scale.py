"""Neighbour search at 10k, 30k and 100k items: FAISS (the product) against the scikit-learn brute
search it replaced, in the same run, with the recall of the approximate index.

Vectors: the offline MiniLM's embeddings of 12,800 real Rotten Tomatoes snippets, and beyond that
mixtures of two real embeddings plus a little noise (there are not 100k real offline texts), so
the neighbourhoods look like real ones. Steps timed per size:

- ``knn graph``: the 10-nearest-neighbour graph that the audit's Datalab checks and the export's
  near-duplicate search use (`labelloop.model.data_issues.knn_graph`), against the former
  scikit-learn implementation;
- ``recall@10``: the graph's neighbours against FAISS's exact search, on 2,000 rows;
- ``data issues``: Cleanlab Datalab's near-duplicate and outlier checks on that graph;
- ``cross-split``: the export's exact leakage check, 80/10/10 split.

The growth exponent between sizes (time ∝ n^e) shows any step that grows faster than n log n.
Target (issue 16): neighbours for 100k in < 20 s, recall >= 0.99.

Usage: python bench/scale.py [--sizes 10000 30000 100000]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from scipy.sparse import csr_matrix  # noqa: E402

from labelloop.model.data_issues import cross_split_neighbours, find_data_issues, knn_graph  # noqa: E402
from labelloop.model.datasets import rotten_tomatoes  # noqa: E402
from labelloop.model.embeddings import get_embedder  # noqa: E402
from labelloop.model.neighbours import nearest, normalised  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "scale.json"


def sklearn_knn_graph(features, *, n_neighbors: int = 10) -> csr_matrix:
    """The implementation before FAISS: brute euclidean search over normalised float32 rows."""
    from sklearn.neighbors import NearestNeighbors

    X = normalised(features)
    graph = NearestNeighbors(n_neighbors=n_neighbors, algorithm="brute", metric="euclidean").fit(X).kneighbors_graph(
        mode="distance")
    graph.data = np.clip(graph.data.astype(np.float64) ** 2 / 2.0, 0.0, 2.0)
    return graph


def vectors(n: int, real: np.ndarray, seed: int = 0) -> np.ndarray:
    """``n`` rows: the real embeddings first, then mixtures of two real ones with a little noise."""
    if n <= len(real):
        return real[:n]
    rng = np.random.default_rng(seed)
    extra = n - len(real)
    a, b = rng.integers(0, len(real), extra), rng.integers(0, len(real), extra)
    w = rng.uniform(0.6, 1.0, size=(extra, 1)).astype(np.float32)
    mixed = w * real[a] + (1 - w) * real[b] + rng.normal(scale=0.02, size=(extra, real.shape[1])).astype(np.float32)
    return normalised(np.vstack([real, mixed]))


def timed(fn):
    t = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    args = parser.parse_args()
    console = Console(width=120)
    texts = [item.text for item in rotten_tomatoes()]
    with console.status(f"embedding {len(texts):,} real snippets"):
        real, embed_s = timed(lambda: get_embedder("default").embed(texts))
    console.print(f"embedded {len(texts):,} snippets in {embed_s:.0f} s ({len(texts) / embed_s:.0f} texts/s)")
    rows = []
    for n in args.sizes:
        X = vectors(n, real)
        with console.status(f"{n:,}: FAISS graph"):
            graph, faiss_s = timed(lambda: knn_graph(X, n_neighbors=10))
        with console.status(f"{n:,}: scikit-learn graph (the former implementation)"):
            _, sklearn_s = timed(lambda: sklearn_knn_graph(X, n_neighbors=10))
        probe = np.random.default_rng(1).choice(n, 2000, replace=False)
        _, exact = nearest(X, X[probe], k=11, exact=True)
        hits = [len(set(graph.indices[graph.indptr[i]:graph.indptr[i + 1]]) & set(e[e != i][:10])) / 10
                for i, e in zip(probe, exact)]
        with console.status(f"{n:,}: Datalab near-duplicates and outliers"):
            _, issues_s = timed(lambda: find_data_issues(X, graph=graph))
        split = np.random.default_rng(2).choice(3, size=n, p=[0.8, 0.1, 0.1])
        with console.status(f"{n:,}: exact cross-split check"):
            _, cross_s = timed(lambda: cross_split_neighbours(X, split, threshold=0.95))
        rows.append({"n": n, "faiss_s": faiss_s, "sklearn_s": sklearn_s, "recall_at_10": float(np.mean(hits)),
                     "data_issues_s": issues_s, "cross_split_s": cross_s})
        console.print(f"{n:,}: graph {faiss_s:.1f} s (scikit-learn {sklearn_s:.1f} s), recall@10 "
                      f"{np.mean(hits):.4f}, data issues {issues_s:.1f} s, cross-split {cross_s:.1f} s")

    table = Table("items", "graph, FAISS s", "graph, scikit-learn s", "speed-up", "recall@10", "Datalab s",
                  "cross-split s", title="neighbour steps, 2 cores" if os.cpu_count() == 2 else "neighbour steps")
    for r in rows:
        table.add_row(f"{r['n']:,}", f"{r['faiss_s']:.1f}", f"{r['sklearn_s']:.1f}", f"{r['sklearn_s'] / r['faiss_s']:.1f}x",
                      f"{r['recall_at_10']:.4f}", f"{r['data_issues_s']:.1f}", f"{r['cross_split_s']:.1f}")
    console.print(table)
    for a, b in zip(rows, rows[1:]):
        ratio = math.log(b["n"] / a["n"])
        growth = {k: math.log(b[k] / a[k]) / ratio for k in ("faiss_s", "sklearn_s", "data_issues_s", "cross_split_s")}
        console.print(f"growth {a['n']:,} → {b['n']:,} (time ∝ n^e): " +
                      ", ".join(f"{k.removesuffix('_s')} e={v:.2f}" for k, v in growth.items()))
    last = rows[-1]
    console.print(f"target at {last['n']:,}: neighbours < 20 s: {last['faiss_s']:.1f} s "
                  f"({'met' if last['faiss_s'] < 20 else 'missed'}); recall >= 0.99: {last['recall_at_10']:.4f} "
                  f"({'met' if last['recall_at_10'] >= 0.99 else 'missed'})")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"embed_texts_per_s": len(texts) / embed_s, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
