"""`labelloop export`: a Label Studio project to validated fine-tuning files.

Reads the project through a local snapshot (`labelloop sync`), turns each task's finished
annotation into an `Example`, and hands them to `labelloop.model.export.pipeline` for cleaning,
deduplication and the leakage-free split. Every line is validated before anything is written;
the files and ``manifest.json`` then appear together (a temporary directory renamed into place),
so a failed export leaves no partial file behind.
"""
from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from importlib import metadata
from pathlib import Path

import numpy as np

from labelloop.label_config.spec import (ClassificationSpec, PreferenceSpec, ResponseSpec, SpanSpec,
                                         UnsupportedLabelConfig, chosen_labels, labelled_spans,
                                         parse_project_config, textarea_text)
from labelloop.model.export.validation import DEFAULT_MAX_TOKENS, validate_lines
from labelloop.model.classification.consensus import majority_vote, majority_vote_multilabel
from labelloop.model.errors import LabelloopError, NotEnoughLabelsError
from labelloop.model.export.formats import Example, RenderOptions, check_format
from labelloop.model.export.pipeline import PreparedExport, prepare, render_splits
from labelloop.model.export.tokens import token_counter

from .annotations import annotator_labels, latest_annotation
from .sync import ProjectSnapshot

_KIND = {ResponseSpec: "llm", PreferenceSpec: "preference", SpanSpec: "ner", ClassificationSpec: "classification"}
_PACKAGES = ("labelloop", "label-studio-sdk", "cleanlab", "scikit-learn", "numpy", "transformers", "torch",
             "tiktoken")


class ExportError(LabelloopError):
    """The export cannot produce valid files; nothing was written."""


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


@dataclass
class ExportResult:
    """``seconds``: wall time per step (kept out of the manifest, which must not change between runs)."""

    out_dir: Path
    manifest: dict
    messages: list[str] = field(default_factory=list)
    seconds: dict = field(default_factory=dict)


def project_kind(spec) -> str:
    return _KIND[type(spec)]


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


def _last_annotated(task: dict) -> str:
    return max((str(a.get("updated_at") or a.get("created_at") or "") for a in task.get("annotations") or ()),
               default="")


def _changed_since(task: dict, when: str) -> bool:
    try:
        return datetime.fromisoformat(_last_annotated(task).replace("Z", "+00:00")) > datetime.fromisoformat(when)
    except ValueError:
        return False


def examples_from_tasks(tasks: dict[int, dict], spec, *, audit_dir: Path | None = None,
                        exclude_flagged: bool = False) -> tuple[list[Example], dict, list[str]]:
    """Examples from snapshot tasks (Label Studio's task JSON), in task-id order, plus
    ``{reason: [task ids]}`` left out and messages.

    Classification uses the consensus of the task's annotators: the audit's (CROWDLAB) when an
    audit ran after the task's last annotation, else the majority vote; a tie without an audit
    is left out. Other project types use the latest finished annotation. Cancelled (skipped)
    annotations never count.
    """
    kind = project_kind(spec)
    skipped, messages = {}, []
    consensus, flagged, audit_time = {}, set(), None
    if audit_dir is not None:
        audit_time = json.loads((audit_dir / "summary.json").read_text()).get("created_at")
        consensus = {row["task_id"]: row["label"] for row in _read_jsonl(audit_dir / "consensus.jsonl")}
        flagged = {row["task_id"] for row in _read_jsonl(audit_dir / "findings.jsonl")}
        messages.append(f"using the audit in {audit_dir}")
    elif exclude_flagged:
        messages.append("--exclude-flagged: no audit of this project found, nothing excluded")
    examples = []
    for task_id, task in sorted(tasks.items()):
        fresh_audit = audit_time is not None and not _changed_since(task, audit_time)
        if exclude_flagged and task_id in flagged and fresh_audit:
            reason = "unresolved audit finding"
        elif kind == "classification":
            example, reason = _classification_example(task, spec, consensus.get(task_id) if fresh_audit else None)
        else:
            example, reason = _annotation_example(task, spec, kind)
        if reason:
            skipped.setdefault(reason, []).append(task_id)
        elif example is not None:
            examples.append(example)
    return examples, skipped, messages


def _classification_example(task: dict, spec, audit_label) -> tuple[Example | None, str | None]:
    """(example or None, reason it was left out or None) from the annotators' consensus."""
    labels = annotator_labels(task, spec)
    if not labels:
        return None, None
    votes = [list(labels.values())]
    vote = majority_vote_multilabel(votes) if spec.multi_label else majority_vote(votes)
    chosen = vote.label[0]
    if len(labels) > 1 and vote.agreement[0] < 1.0:
        if audit_label is not None:
            chosen = audit_label
        elif vote.tie[0]:
            return None, "tied annotators (run labelloop audit to resolve)"
    chosen = tuple(chosen) if isinstance(chosen, (list, tuple)) else (str(chosen),)
    return Example(task["id"], (task.get("data") or {}).get(spec.value_key), labels=chosen), None


def _annotation_example(task: dict, spec, kind: str) -> tuple[Example | None, str | None]:
    """(example or None, reason it was left out or None) from the latest finished annotation."""
    annotation = latest_annotation(task.get("annotations"))
    if annotation is None:
        return None, None
    data, result = task.get("data") or {}, annotation.get("result")
    if kind == "llm":
        return Example(task["id"], data.get(spec.prompt_key), response=textarea_text(result, spec)), None
    if kind == "preference":
        answers = dict(spec.answers)
        picked = [choice for choice in chosen_labels(result, spec) if choice in answers]
        if not picked:
            return None, "no preferred answer chosen"
        other = next(key for choice, key in spec.answers if choice != picked[0])
        return Example(task["id"], data.get(spec.prompt_key), response=data.get(answers[picked[0]]),
                       rejected=data.get(other)), None
    text = data.get(spec.value_key)
    spans = tuple(s for s in labelled_spans(result, spec) if isinstance(text, str) and s[1] <= len(text))
    return Example(task["id"], text, spans=spans), None


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _versions() -> dict:
    out = {}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def export_snapshot(snapshot: ProjectSnapshot, out_dir: Path, options: ExportOptions, *,
                    audit_root: Path | None = None, progress=None) -> ExportResult:
    """Everything after the pull: examples, pipeline, validation, files and manifest.

    ``progress(step, total)``, if given, returns a callback that advances that step's bar.
    """
    out_dir = Path(out_dir)
    check_out_dir(out_dir, options.overwrite)
    state = snapshot.state()
    try:
        spec = parse_project_config(state.get("label_config"))
    except UnsupportedLabelConfig as exc:
        raise ExportError(f"project {snapshot.project_id}: {exc}") from None
    kind = project_kind(spec)
    check_format(options.fmt, kind)
    if options.instruction and "{text}" in options.instruction:
        raise ExportError("--instruction goes before the text; use {labels} for the label names, not {text}")
    audit_dir = _latest_audit(audit_root, snapshot.project_id)
    started = time.perf_counter()
    examples, skipped, messages = examples_from_tasks(snapshot.tasks(), spec, audit_dir=audit_dir,
                                                      exclude_flagged=options.exclude_flagged)
    seconds = {"read_snapshot": time.perf_counter() - started}
    if not examples:
        raise NotEnoughLabelsError(f"project {snapshot.project_id} has no finished annotations to export")

    def embed(texts):
        from labelloop.model.embeddings import get_embedder

        advance = progress("embedding texts for near-duplicates", len(texts)) if progress else None
        return get_embedder(options.model_name).embed(texts, progress=advance)

    prepared = prepare(examples, kind=kind, fractions=options.fractions, seed=options.seed,
                       near_duplicate_threshold=options.near_duplicate_threshold,
                       minhash_threshold=options.minhash_threshold,
                       embed=embed if options.near_duplicate_threshold > 0 else None)
    seconds.update(prepared.seconds)
    for reason, ids in skipped.items():
        prepared.dropped[reason] = ids + prepared.dropped.get(reason, [])
    label_names = spec.labels if kind in ("classification", "ner") else ()
    opts = RenderOptions(kind, tuple(label_names), bool(getattr(spec, "multi_label", False)), options.system,
                         options.instruction)
    started = time.perf_counter()
    contents = _render(prepared, options.fmt, opts)
    seconds["render"] = time.perf_counter() - started
    started = time.perf_counter()
    counter = token_counter(options.tokenizer)
    invalid = _invalid_examples(prepared, contents, options, counter)
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
    manifest = build_manifest(snapshot.project_id, kind, options, prepared, contents, reports, counter.name)
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


def _invalid_examples(prepared: PreparedExport, contents: dict, options: ExportOptions, counter) -> dict:
    """``{task id: reason}`` for every example whose record fails validation on its own."""
    from labelloop.model.export.validation import validate_conll_lines

    invalid = {}
    splits = prepared.split_examples()
    for name, (records, _) in contents.items():
        if options.fmt == "conll":
            errors = [(k, code, message) for k, block in enumerate(records)
                      for _, code, message in validate_conll_lines(block.splitlines(), min_examples=0).errors[:1]]
        else:
            report = validate_lines(records, fmt=options.fmt, counter=counter, max_tokens=options.max_tokens,
                                    min_examples=0)
            errors = [(line - 1, code, message) for line, code, message in report.errors if line > 0]
        for index, code, message in errors:
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


def file_name(split: str, fmt: str) -> str:
    return f"{split}.{'conll' if fmt == 'conll' else 'jsonl'}"


def _content(split_lines: list[str], fmt: str) -> str:
    return ("\n" if fmt == "conll" else "").join(line if fmt == "conll" else line + "\n" for line in split_lines)


def build_manifest(project_id, kind, options: ExportOptions, prepared: PreparedExport, contents, reports,
                   tokenizer) -> dict:
    splits = prepared.split_examples()
    sizes = np.bincount(prepared.group) if len(prepared.group) else np.zeros(0, dtype=int)
    counts = {}
    for name, examples in splits.items():
        labels = [label for e in examples for label in (e.labels or tuple(s[2] for s in e.spans))]
        counts[name] = {"examples": len(examples), "labels": dict(sorted(
            zip(*np.unique(labels, return_counts=True)))) if labels else {}}
        counts[name]["labels"] = {str(k): int(v) for k, v in counts[name]["labels"].items()}
    return {
        "project_id": project_id, "kind": kind, "format": options.fmt,
        "split": list(prepared.fractions), "seed": options.seed, "system": options.system,
        "instruction": options.instruction, "near_duplicate_threshold": options.near_duplicate_threshold,
        "minhash_threshold": options.minhash_threshold,
        "exclude_flagged": options.exclude_flagged,
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
        "files": {file_name(name, options.fmt): {"sha256": _hash(text), "examples": len(records)}
                  for name, (records, text) in contents.items() if records},
        "examples": {name: [{"task_id": e.task_id, "sha256": _hash(record)}
                            for e, record in zip(splits[name], records)] for name, (records, _) in contents.items()},
        "versions": _versions(),
        "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }


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
    snapshot = ProjectSnapshot(data_dir / "snapshots", project_id)
    snapshot.sync(client, full=full, progress=progress("pulling tasks", None) if progress else None)
    return export_snapshot(snapshot, Path(out_dir), options, audit_root=data_dir, progress=progress)
