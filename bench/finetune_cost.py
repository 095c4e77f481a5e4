"""What the optional full fine-tune costs against the default head, on the same labels.

Rotten Tomatoes snippets, ``--train`` labels, a held-out test set. Printed per device (CPU, and
the GPU when one is present): wall time and test accuracy of

- the head: embedding the texts (uncached) + logistic regression, labelloop's default retrain;
- the full fine-tune of all-MiniLM-L6-v2 for ``--epochs`` epochs;

and the ratios fine-tune time / head time and fine-tune accuracy - head accuracy. That is the
trade-off behind LABELLOOP_FINETUNE_MIN_LABELS.

Usage: python bench/finetune_cost.py [--train 1000] [--test 1000] [--epochs 2]
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from labelloop.model.classification.classifier import EmbeddingClassifier  # noqa: E402
from labelloop.model.datasets import rotten_tomatoes  # noqa: E402
from labelloop.model.embeddings import CachedEmbedder, TransformerEncoder, register_embedder  # noqa: E402
from labelloop.model.classification.finetune import FineTunedClassifier  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=1000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    console = Console()
    items = rotten_tomatoes(args.train + args.test, seed=7)
    X_train, y_train = [i.text for i in items[:args.train]], np.array([i.label for i in items[:args.train]])
    X_test, y_test = [i.text for i in items[args.train:]], np.array([i.label for i in items[args.train:]])

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    table = Table(title=f"{args.train} labels, {args.test} test texts, fine-tune {args.epochs} epochs")
    for col in ("device", "model", "seconds", "test accuracy", "time ratio", "accuracy gain"):
        table.add_column(col, justify="right")
    for device in devices:
        # a fresh, empty cache per device, so the head pays for its embeddings too
        name = f"bench-{device}"
        register_embedder(name, CachedEmbedder(TransformerEncoder("default", device=device)))
        t = time.perf_counter()
        head = EmbeddingClassifier(model_name=name).fit(X_train, y_train)
        head_s = time.perf_counter() - t
        head_acc = float((head.predict(X_test) == y_test).mean())

        t = time.perf_counter()
        ft = FineTunedClassifier(epochs=args.epochs, device=device).fit(X_train, y_train)
        ft_s = time.perf_counter() - t
        ft_acc = float((ft.predict(X_test) == y_test).mean())
        table.add_row(device, "head (embed + LR)", f"{head_s:.1f}", f"{head_acc:.3f}", "1.0", "")
        table.add_row(device, "full fine-tune", f"{ft_s:.1f}", f"{ft_acc:.3f}", f"{ft_s / head_s:.1f}",
                      f"{ft_acc - head_acc:+.3f}")
    console.print(table)
    if len(devices) == 1:
        console.print("no GPU here: run this on a machine with one for the GPU figures")


if __name__ == "__main__":
    main()
