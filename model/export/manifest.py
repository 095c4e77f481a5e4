"""The options of an export and its manifest: what was exported, how, and from what."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import metadata

import numpy as np

from .pipeline import SYNTHETIC_LEFT_OUT, PreparedExport
from .validation import DEFAULT_MAX_TOKENS

PACKAGES = ("labelloop", "label-studio-sdk", "cleanlab", "scikit-learn", "numpy", "transformers", "torch",
            "tiktoken", "datasketch")


@dataclass
class ExportOptions:
    fmt: str
    fractions: str = "0.8,0.1,0.1"
    seed: int = 0
    system: str | None = None
    instruction: str | None = None
    near_duplicate_threshold: float = 0.95
    minhash_threshold: float = 0.8
    exclude_flagged: bool = False
    max_tokens: int = DEFAULT_MAX_TOKENS
    tokenizer: str = "auto"
    model_name: str = "default"
    overwrite: bool = False
    plot: bool = False
    synthetic: bool = True


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def versions() -> dict:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def file_name(split: str, fmt: str) -> str:
    return f"{split}.{'conll' if fmt == 'conll' else 'jsonl'}"


def build_manifest(project_id, kind: str, options: ExportOptions, prepared: PreparedExport, contents: dict,
                   reports: dict, tokenizer: str, *, command: str) -> dict:
    """Everything about an export but the examples' text, with no timestamp: two runs with the same
    annotations and seed give the same manifest. ``contents``: per split, ``(records, file text)``;
    ``reports``: per split, its `ValidationReport`."""
    splits = prepared.split_examples()
    sizes = np.bincount(prepared.group) if len(prepared.group) else np.zeros(0, dtype=int)
    counts = {}
    for name, examples in splits.items():
        labels = [label for e in examples for label in (e.labels or tuple(s[2] for s in e.spans))]
        counts[name] = {"examples": len(examples), "synthetic": sum(e.synthetic_of is not None for e in examples),
                        "labels": dict(sorted(
            zip(*np.unique(labels, return_counts=True)))) if labels else {}}
        counts[name]["labels"] = {str(k): int(v) for k, v in counts[name]["labels"].items()}
    return {
        "project_id": project_id, "kind": kind, "format": options.fmt,
        "split": list(prepared.fractions), "seed": options.seed, "system": options.system,
        "instruction": options.instruction, "near_duplicate_threshold": options.near_duplicate_threshold,
        "minhash_threshold": options.minhash_threshold,
        "exclude_flagged": options.exclude_flagged,
        "synthetic": {"included": options.synthetic,
                      "examples": sum(c["synthetic"] for c in counts.values()),
                      "left_out": len(prepared.dropped.get(SYNTHETIC_LEFT_OUT, ()))},
        "counts": counts,
        "tokens": {"tokenizer": tokenizer, "max_tokens": options.max_tokens,
                   **{name: r.token_stats() for name, r in reports.items()}},
        "dropped": {reason: sorted(ids) for reason, ids in sorted(prepared.dropped.items())},
        "near_duplicates": {"pairs": int(len(prepared.near_duplicate_pairs)),
                            "pairs_by_detector": prepared.pairs_by_detector,
                            "groups_with_several_items": int((sizes > 1).sum()),
                            "largest_group": int(sizes.max(initial=0)),
                            "cross_split_pairs_random_split": prepared.overlap_before,
                            "cross_split_pairs": prepared.overlap_after},
        "files": {file_name(name, options.fmt): {"sha256": sha256(text), "examples": len(records)}
                  for name, (records, text) in contents.items() if records},
        "examples": {name: [{"task_id": e.task_id, "sha256": sha256(record)}
                            for e, record in zip(splits[name], records)] for name, (records, _) in contents.items()},
        "versions": versions(),
        "command": command,
    }
