"""Gazetteers: lists of entity strings per label, matched on word boundaries with spaCy's `PhraseMatcher`.

Entries come from files (one per line; `read_entries` reports blank and duplicate lines) and from
the project's own annotations: every span a person labelled becomes an entry (distant
supervision, `entries_from_spans`). Matching is case-sensitive unless ``ignore_case``; where
matches overlap, the longest wins (spaCy's `filter_spans`).
"""
from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from labelloop.model.errors import LabelloopError

from .tokens import make_docs, tokenizer_nlp

MAX_ENTRY_CHARS = 200


class GazetteerFileError(LabelloopError):
    """A gazetteer file cannot be read (missing, not UTF-8)."""


@dataclass
class EntryList:
    """Entries read from one file, and what was skipped."""

    entries: list[str]
    blank: int = 0
    duplicates: int = 0
    too_long: int = 0

    def summary(self) -> str:
        skipped = [f"{n} {what}" for n, what in ((self.blank, "blank lines"), (self.duplicates, "duplicate lines"),
                                                  (self.too_long, f"lines over {MAX_ENTRY_CHARS} characters")) if n]
        return f"{len(self.entries)} entries" + (f" ({', '.join(skipped)} skipped)" if skipped else "")


def parse_entries(lines: Iterable[str]) -> EntryList:
    """Entries from lines: stripped, blank lines and exact duplicates skipped (and counted)."""
    result, seen = EntryList([]), set()
    for line in lines:
        entry = " ".join(line.split())
        if not entry:
            result.blank += 1
        elif len(entry) > MAX_ENTRY_CHARS:
            result.too_long += 1
        elif entry in seen:
            result.duplicates += 1
        else:
            seen.add(entry)
            result.entries.append(entry)
    return result


def read_entries(path: str | Path) -> EntryList:
    """`parse_entries` of a UTF-8 file; raises `GazetteerFileError` saying what is wrong."""
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise GazetteerFileError(f"gazetteer file {path} does not exist") from None
    except UnicodeDecodeError as exc:
        raise GazetteerFileError(f"gazetteer file {path} is not UTF-8 (byte {exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise GazetteerFileError(f"gazetteer file {path} cannot be read: {exc}") from None
    return parse_entries(text.splitlines())


def label_file(directory: str | Path, label: str) -> Path:
    """Where the entries of ``label`` live in a gazetteer folder: ``<label>.txt``."""
    return Path(directory) / (re.sub(r"[\\/\x00]", "_", label) + ".txt")


def read_directory(directory: str | Path | None, labels: Sequence[str]) -> dict[str, list[str]]:
    """``{label: entries}`` from ``<directory>/<label>.txt`` for each of ``labels`` that has a file."""
    out: dict[str, list[str]] = {}
    if not directory or not Path(directory).is_dir():
        return out
    for label in labels:
        path = label_file(directory, label)
        if path.is_file():
            out[label] = read_entries(path).entries
    return out


def entries_from_spans(texts: Sequence[str], spans: Sequence[Sequence[tuple]]) -> dict[str, list[str]]:
    """Distant supervision: the text of every labelled span, under the label people gave it most."""
    votes: dict[str, Counter] = defaultdict(Counter)
    for text, text_spans in zip(texts, spans):
        for start, end, label, *_ in text_spans:
            entry = " ".join(text[start:end].split())
            if entry and len(entry) <= MAX_ENTRY_CHARS:
                votes[entry][label] += 1
    out: dict[str, list[str]] = defaultdict(list)
    for entry, counter in votes.items():
        out[counter.most_common(1)[0][0]].append(entry)
    return dict(out)


def merge(*sources: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """Entries per label from several sources, first source first, without repeats."""
    out: dict[str, dict[str, None]] = defaultdict(dict)
    for source in sources:
        for label, entries in source.items():
            out[label].update(dict.fromkeys(entries))
    return {label: list(entries) for label, entries in out.items() if entries}


@dataclass
class Gazetteer:
    """``entries``: ``{label: [entry, ...]}``; `spans` finds them in spaCy Docs."""

    entries: dict[str, list[str]] = field(default_factory=dict)
    ignore_case: bool = False

    def __post_init__(self):
        self._matcher = None

    def __len__(self) -> int:
        return sum(len(v) for v in self.entries.values())

    def _build(self):
        from spacy.matcher import PhraseMatcher

        nlp = tokenizer_nlp()
        matcher = PhraseMatcher(nlp.vocab, attr="LOWER" if self.ignore_case else "ORTH")
        for label, entries in self.entries.items():
            if entries:
                matcher.add(label, make_docs(entries))
        return matcher

    def spans(self, docs: Sequence) -> list[list[tuple[int, int, str]]]:
        """Per Doc, ``(start_token, end_token, label)`` matches; the longest of overlapping ones."""
        from spacy.util import filter_spans

        if not self.entries:
            return [[] for _ in docs]
        if self._matcher is None:
            self._matcher = self._build()
        out = []
        for doc in docs:
            matches = self._matcher(doc, as_spans=True)
            out.append([(s.start, s.end, s.label_) for s in filter_spans(matches)])
        return out


def out_of_fold_spans(texts: Sequence[str], spans: Sequence[Sequence[tuple]], docs: Sequence, *,
                      file_entries: Mapping[str, Sequence[str]] | None = None, ignore_case: bool = False,
                      n_folds: int = 5, seed: int = 0) -> list[list[tuple[int, int, str]]]:
    """Per Doc, the matches of a gazetteer of ``file_entries`` plus the spans people labelled in
    the *other* folds, so the learned entries never vouch for the text they came from (K-fold
    over texts; fewer than two texts get no match)."""
    import numpy as np
    from sklearn.model_selection import KFold

    out: list[list[tuple[int, int, str]]] = [[] for _ in docs]
    if len(docs) < 2:
        return out
    for train, test in KFold(max(2, min(n_folds, len(docs))), shuffle=True, random_state=seed).split(
            np.arange(len(docs))):
        entries = merge(file_entries or {}, entries_from_spans([texts[i] for i in train], [spans[i] for i in train]))
        for i, found in zip(test, Gazetteer(entries, ignore_case=ignore_case).spans([docs[i] for i in test])):
            out[i] = found
    return out
