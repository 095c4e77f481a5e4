"""`labelloop export`: a Label Studio project to validated fine-tuning files.

Reads the project through a local snapshot (`labelloop sync`), turns each task's finished
annotation into an `Example`, and hands them to `labelloop.model.export.pipeline` for cleaning,
deduplication and the leakage-free split. Every line is validated before anything is written;
the files and ``manifest.json`` then appear together (a temporary directory renamed into place),
so a failed export leaves no partial file behind.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from labelloop.kinds import parse as parse_config
from labelloop.kinds.base import held_back
from labelloop.label_config.spec import UnsupportedLabelConfig
from labelloop.model.export.validation import validate_lines
from labelloop.model.errors import LabelloopError, NotEnoughLabelsError
from labelloop.model.export.formats import RenderOptions, check_format
from labelloop.model.export.manifest import ExportOptions, build_manifest, file_name
from labelloop.model.export.pipeline import PreparedExport, prepare, render_splits
from labelloop.model.export.tokens import token_counter

from .sync import ProjectSnapshot



class ExportError(LabelloopError):
    """The export cannot produce valid files; nothing was written."""


@dataclass
class ExportResult:
    """``seconds``: wall time per step (kept out of the manifest, which must not change between runs)."""

    out_dir: Path
    manifest: dict
    messages: list[str] = field(default_factory=list)
    seconds: dict = field(default_factory=dict)


PLOT_FILE = "label_distribution.png"


def previous_export_files(out_dir: Path) -> set[str]:
    """The files a previous export wrote into ``out_dir``, as its manifest lists them."""
    try:
        manifest = json.loads((out_dir / "manifest.json").read_text(encoding="utf-8"))
        return {"manifest.json", PLOT_FILE, *manifest["files"]}
    except (OSError, ValueError, KeyError, TypeError):
        return set()


def check_out_dir(out_dir: Path, overwrite: bool) -> None:
    """``out_dir`` must be empty, or (with ``overwrite``) hold only what a previous export wrote."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise ExportError(f"{out_dir} is a file, not a directory")
    present = {p.name for p in out_dir.iterdir()}
    if not present:
        return
    if not overwrite:
        raise ExportError(f"{out_dir} already holds files; pass --overwrite to replace a previous export there")
    foreign = sorted(present - previous_export_files(out_dir))
    if foreign:
        raise ExportError(f"--overwrite replaces only what labelloop export wrote (the files its manifest.json "
                          f"lists), but {out_dir} also holds {', '.join(foreign[:5])}"
                          f"{' ...' if len(foreign) > 5 else ''}; choose another --out")


def _latest_audit(audit_root: Path | None, project_id: int) -> Path | None:
    if audit_root is None or not audit_root.is_dir():
        return None
    runs = sorted(audit_root.glob(f"audit-{project_id}-*/summary.json"))
    return runs[-1].parent if runs else None


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()] \
        if path.exists() else []


def read_audit(audit_dir: Path | None) -> dict | None:
    """What the export uses of an audit: ``{"created_at", "consensus": {task id: label}, "flagged": {task ids}}``,
    where flagged tasks are those ``--exclude-flagged`` holds back until reviewed (`held_back`:
    near-duplicates that agree are deduplicated by the export itself, outliers are no labelling
    mistake, and a label the model doubts past Cleanlab's estimate is kept)."""
    if audit_dir is None:
        return None
    return {"created_at": json.loads((audit_dir / "summary.json").read_text()).get("created_at"),
            "consensus": {row["task_id"]: row["label"] for row in _read_jsonl(audit_dir / "consensus.jsonl")},
            "flagged": {row["task_id"] for row in _read_jsonl(audit_dir / "findings.jsonl") if held_back(row)}}


def export_snapshot(snapshot: ProjectSnapshot, out_dir: Path, options: ExportOptions, *,
                    audit_root: Path | None = None, progress=None) -> ExportResult:
    """Everything after the pull: examples, pipeline, validation, files and manifest.

    ``progress(step, total)``, if given, returns a callback that advances that step's bar.
    """
    out_dir = Path(out_dir)
    check_out_dir(out_dir, options.overwrite)
    state = snapshot.state()
    try:
        spec, kind = parse_config(state.get("label_config"))
    except UnsupportedLabelConfig as exc:
        raise ExportError(f"project {snapshot.project_id}: {exc}") from None
    check_format(options.fmt, kind.name)
    if options.instruction and "{text}" in options.instruction:
        raise ExportError("--instruction goes before the text; use {labels} for the label names, not {text}")
    audit_dir = _latest_audit(audit_root, snapshot.project_id)
    started = time.perf_counter()
    examples, skipped, messages = kind.examples(snapshot.tasks(), spec, audit=read_audit(audit_dir),
                                                exclude_flagged=options.exclude_flagged)
    if audit_dir is not None:
        messages.insert(0, f"using the audit in {audit_dir}")
    seconds = {"read_snapshot": time.perf_counter() - started}
    if not examples:
        raise NotEnoughLabelsError(f"project {snapshot.project_id} has no finished annotations to export")

    def embed(texts):
        from labelloop.model.embeddings import get_embedder

        advance = progress("embedding texts for near-duplicates", len(texts)) if progress else None
        return get_embedder(options.model_name).embed(texts, progress=advance)

    prepared = prepare(examples, keep_offsets=kind.keep_offsets, fractions=options.fractions, seed=options.seed,
                       near_duplicate_threshold=options.near_duplicate_threshold,
                       minhash_threshold=options.minhash_threshold,
                       embed=embed if options.near_duplicate_threshold > 0 else None, synthetic=options.synthetic)
    seconds.update(prepared.seconds)
    for reason, ids in skipped.items():
        prepared.dropped[reason] = ids + prepared.dropped.get(reason, [])
    opts = kind.render_options(spec, system=options.system, instruction=options.instruction)
    started = time.perf_counter()
    contents = _render(prepared, options.fmt, opts)
    seconds["render"] = time.perf_counter() - started
    started = time.perf_counter()
    counter = token_counter(options.tokenizer)
    reports = _validate(contents, options, counter)
    invalid = _invalid_examples(prepared, contents, reports, options)
    if invalid:  # one bad example should not sink the export: leave it out, say why, re-check the rest
        prepared = _without(prepared, set(invalid))
        for task_id, reason in sorted(invalid.items()):
            prepared.dropped.setdefault(reason, []).append(task_id)
        contents = _render(prepared, options.fmt, opts)
        reports = _validate(contents, options, counter)
    problems = [f"{name} line {line}: {message}" for name, r in reports.items() for line, _, message in r.errors]
    if problems:
        raise ExportError(f"the {options.fmt} files would not be valid, nothing written ({len(problems)} "
                          f"problems):\n  " + "\n  ".join(problems[:20]))
    messages += [f"{name}: {w}" for name, r in reports.items() for w in r.warnings]
    seconds["validate"] = time.perf_counter() - started
    started = time.perf_counter()
    manifest = build_manifest(snapshot.project_id, kind.name, options, prepared, contents, reports, counter.name,
                              command=shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]))
    largest = manifest["near_duplicates"]["largest_group"]
    if largest > max(10, 0.05 * len(prepared.group)):
        # templated prompts can chain into one big group, which then lands in a single split
        messages.append(f"{largest} examples form one near-duplicate group, so they share a split; if they are "
                        f"not really duplicates, raise --near-duplicate-threshold "
                        f"(now {options.near_duplicate_threshold})")
    write_files(out_dir, contents, manifest, options)
    seconds["write"] = time.perf_counter() - started
    return ExportResult(out_dir, manifest, messages, seconds)


def _render(prepared: PreparedExport, fmt: str, opts: RenderOptions) -> dict[str, tuple[list[str], str]]:
    """Per split: the records (JSON lines or CoNLL blocks) and the file text they make."""
    return {name: (records, _content(records, fmt)) for name, records in render_splits(prepared, fmt, opts).items()}


def _invalid_examples(prepared: PreparedExport, contents: dict, reports: dict, options: ExportOptions) -> dict:
    """``{task id: reason}`` for every example whose record has a line error in ``reports``
    (file-level errors, line 0, are not any one example's)."""
    invalid = {}
    splits = prepared.split_examples()
    for name, report in reports.items():
        records = contents[name][0]
        # the 1-based file line where each record starts: CoNLL blocks span lines, a blank between
        starts = np.cumsum([1] + [r.count("\n") + 1 for r in records[:-1]]) if options.fmt == "conll" \
            else np.arange(1, len(records) + 1)
        for line, code, message in report.errors:
            if line > 0:
                index = int(np.searchsorted(starts, line, side="right")) - 1
                reason = f"over {options.max_tokens} tokens" if code == "too_many_tokens" else f"invalid ({code})"
                invalid.setdefault(splits[name][index].task_id, reason)
    return invalid


def _validate(contents: dict, options: ExportOptions, counter) -> dict:
    """A validation report per split; the training file needs OpenAI's 10 examples."""
    return {name: validate_lines(text.splitlines(), fmt=options.fmt, counter=counter, max_tokens=options.max_tokens,
                                 path=name, min_examples=10 if name == "train" else 1)
            for name, (records, text) in contents.items() if records or name == "train"}


def _without(prepared: PreparedExport, task_ids: set) -> PreparedExport:
    keep = np.asarray([e.task_id not in task_ids for e in prepared.examples], dtype=bool)
    return replace(prepared, examples=[e for e, k in zip(prepared.examples, keep) if k], split=prepared.split[keep],
                   group=prepared.group[keep])


def _content(split_lines: list[str], fmt: str) -> str:
    return ("\n" if fmt == "conll" else "").join(line if fmt == "conll" else line + "\n" for line in split_lines)


def write_files(out_dir: Path, contents: dict, manifest: dict, options: ExportOptions) -> None:
    """Write into a temporary sibling directory, then swap it in: all files appear at once."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        for name, (records, text) in contents.items():
            if records:
                (tmp / file_name(name, options.fmt)).write_text(text, encoding="utf-8")
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        if options.plot:
            plot_label_distribution(tmp / PLOT_FILE, manifest["counts"])
        check_out_dir(out_dir, options.overwrite)  # nothing appeared meanwhile
        old = None
        if out_dir.exists():
            old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def plot_label_distribution(path: Path, counts: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = sorted({label for c in counts.values() for label in c["labels"]})
    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / max(1, len(counts))
    for k, (name, c) in enumerate(counts.items()):
        total = max(1, c["examples"])
        ax.bar(np.arange(len(labels)) + k * width, [c["labels"].get(label, 0) / total for label in labels],
               width, label=f"{name} ({c['examples']})")
    ax.set_xticks(np.arange(len(labels)) + 0.4 - width / 2, labels, rotation=45, ha="right")
    ax.set_ylabel("share of the split's examples")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_export(client, project_id: int, out_dir: Path, options: ExportOptions, *, data_dir: Path,
               full: bool = False, progress=None) -> ExportResult:
    """Sync the project's snapshot under ``data_dir``, then `export_snapshot` (audits are looked
    up in ``data_dir`` too, where `labelloop audit` writes them). ``progress`` as for
    `export_snapshot`; the pull reports under "pulling tasks" with an unknown total. ``full`` pulls
    the whole project again instead of what changed since the last sync."""
    check_out_dir(Path(out_dir), options.overwrite)  # before any network work
    check_format(options.fmt)
    snapshot = ProjectSnapshot.in_data_dir(data_dir, project_id)
    snapshot.sync(client, full=full, progress=progress("pulling tasks", None) if progress else None)
    return export_snapshot(snapshot, Path(out_dir), options, audit_root=data_dir, progress=progress)
