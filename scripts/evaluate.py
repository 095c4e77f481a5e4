"""`labelloop evaluate`: score a fine-tuned model on an exported test split.

The answers come from an OpenAI-compatible endpoint (temperature 0) or from a JSONL file the
user generated. The project kind and labels come from the export's ``manifest.json`` beside the
split (or ``--kind``). Results go to ``<split folder>/evaluations/<name>/``: ``metrics.json``,
PNG plots and ``report.html``, which shows earlier runs on the same split file side by side.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from labelloop.model.evaluation.metrics import (EvaluationError, classification_metrics, generation_metrics,
                                                ner_metrics, parse_label, parse_spans, tag_metrics)
from labelloop.model.evaluation.report import earlier_runs, write_report
from labelloop.model.evaluation.split_file import is_conll, read_conll, read_split

KINDS = ("llm", "preference", "classification", "ner")
#: what a test split of each project kind is scored as
TASK_OF_KIND = {"llm": "generation", "preference": "generation", "classification": "classification",
                "ner": "ner"}


@dataclass
class EvaluationOptions:
    endpoint: str | None = None
    model: str | None = None
    api_key: str | None = None
    answers: Path | None = None
    kind: str | None = None
    name: str | None = None
    out: Path | None = None
    max_tokens: int = 256
    concurrency: int = 4
    timeout_s: float = 120.0
    #: a GGUF file for the references' perplexity; None: the SmolLM2 the LLM prelabels use, if installed
    perplexity_model: Path | None = None
    bertscore_model: str | None = "default"


@dataclass
class EvaluationResult:
    metrics: dict
    report: Path
    earlier: list


def _manifest(split: Path) -> dict | None:
    path = split.parent / "manifest.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _answers_from_file(path: Path, n: int) -> list[str]:
    """One answer per line: a JSON string, ``{"answer": ...}``, or a chat record whose last turn is the answer."""
    try:
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise EvaluationError(f"cannot read the answers file {path}: {exc}") from None
    if len(lines) != n:
        raise EvaluationError(f"{path} has {len(lines)} answers for {n} test examples: line i must answer "
                              "line i of the split")
    answers = []
    for i, line in enumerate(lines, 1):
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            raise EvaluationError(f"{path.name} line {i} is not JSON") from None
        if isinstance(value, dict) and "answer" in value:
            value = value["answer"]
        elif isinstance(value, dict) and isinstance(value.get("messages"), list) and value["messages"]:
            value = value["messages"][-1].get("content")
        if not isinstance(value, str):
            raise EvaluationError(f"{path.name} line {i}: expected a JSON string, {{\"answer\": ...}} or a chat record")
        answers.append(value)
    return answers


def _answers_from_endpoint(prompts, options: EvaluationOptions, progress) -> tuple[list[str], int]:
    from labelloop.model.responses.llm import Drafter, LLMConfig

    config = LLMConfig(base_url=options.endpoint, model=options.model, api_key=options.api_key, temperature=0.0,
                       max_tokens=options.max_tokens, concurrency=options.concurrency, timeout_s=options.timeout_s,
                       logprobs=False, samples=1, context_tokens=1 << 20)
    config.validate()
    drafter = Drafter(config)
    drafter.check(timeout=10.0)
    drafts = drafter.draft_many([list(p) for p in prompts], progress=progress)
    failed = [d.error for d in drafts if d.error]
    if failed and len(failed) == len(drafts):
        raise EvaluationError(f"the endpoint answered none of the {len(drafts)} prompts: {failed[0]}")
    return [d.text or "" for d in drafts], len(failed)


def _perplexity(examples, options: EvaluationOptions, step) -> dict:
    from labelloop.model.evaluation.perplexity import reference_perplexity
    from labelloop.scripts.services import ServiceError, llm_server_python, smollm2_gguf

    try:
        python = llm_server_python()
        model = str(options.perplexity_model) if options.perplexity_model else smollm2_gguf(python)
    except ServiceError as exc:
        return {"unavailable": f"no local llama.cpp to score with: {exc}"}
    advance = step("perplexity of the references", len(examples)) if step else None
    try:
        return reference_perplexity([e.messages for e in examples], [e.reference for e in examples],
                                    model_path=model, python=python, progress=advance)
    except EvaluationError as exc:
        return {"unavailable": str(exc)}


def _entities(sentence) -> str:
    """A tagged sentence's entities as a person reads them: ``LOC: New York; PER: Ann``."""
    from seqeval.metrics.sequence_labeling import get_entities

    return "; ".join(f"{label}: {' '.join(tok for tok, _ in sentence[start:end + 1])}"
                     for label, start, end in get_entities([tag for _, tag in sentence]))


def _conll_scores(split: Path, answers: Path) -> tuple[dict, list[dict]]:
    """Entity metrics of a token classifier's tags (``answers``, CoNLL over the split's own tokens)."""
    gold, predicted = read_conll(split), read_conll(answers, what="answers")
    if len(predicted) != len(gold):
        raise EvaluationError(f"{answers} has {len(predicted)} sentences for {len(gold)} in the split: sentence i "
                              "must tag sentence i")
    for i, (g, p) in enumerate(zip(gold, predicted), 1):
        if [tok for tok, _ in g] != [tok for tok, _ in p]:
            first = next((j for j, (a, b) in enumerate(zip(g, p)) if a[0] != b[0]), min(len(g), len(p)))
            raise EvaluationError(f"sentence {i} of {answers.name} does not have the split's tokens (token {first + 1}: "
                                  f"{p[first][0] if first < len(p) else 'none'!r} for "
                                  f"{g[first][0] if first < len(g) else 'none'!r}): tag the split's tokens as they are")
    metrics = tag_metrics([[tag for _, tag in s] for s in gold], [[tag for _, tag in s] for s in predicted])
    shown = [{"prompt": " ".join(tok for tok, _ in g), "reference": _entities(g), "answer": _entities(p),
              "score": float(_entities(g) == _entities(p))} for g, p in zip(gold, predicted)]
    return metrics, shown


def _run_name(options: EvaluationOptions) -> str:
    name = options.name or (options.model if options.endpoint else options.answers.stem)
    return re.sub(r"[^\w.-]+", "_", str(name)).strip("._") or "run"


def evaluate(split: Path, options: EvaluationOptions, *, step: Callable | None = None) -> EvaluationResult:
    """Score the answers to ``split``'s prompts and write the report (see the module docstring).
    ``step(name, total) -> advance(n)`` shows progress."""
    split = Path(split)
    if (options.endpoint is None) == (options.answers is None):
        raise EvaluationError("give either --endpoint (with --model) or --answers")
    if options.endpoint and not options.model:
        raise EvaluationError("--endpoint needs --model: the name the endpoint serves the fine-tuned model as")
    if is_conll(split):
        if options.answers is None:
            raise EvaluationError("a CoNLL split is scored from a token classifier's tags: write them as CoNLL (the "
                                  "split's tokens, one per line, the predicted tag last) and pass --answers; "
                                  "a chat endpoint is evaluated on an openai-chat export")
        metrics, shown = _conll_scores(split, Path(options.answers))
        return _finish(split, options, metrics, shown, task="ner", kind="ner", source=f"the file {options.answers}",
                       failed=0)
    manifest = _manifest(split)
    kind = options.kind or (manifest or {}).get("kind")
    if kind is None:
        kind = "llm"
    if kind not in KINDS:
        raise EvaluationError(f"--kind must be one of {', '.join(KINDS)}, got {kind!r}")
    labels = sorted({label for counts in (manifest or {}).get("counts", {}).values() for label in counts["labels"]})
    examples = read_split(split, kind=kind, labels=labels)
    if kind == "classification" and not labels:
        labels = sorted({part.strip() for e in examples for part in e.reference.split(",")})
    task = TASK_OF_KIND[kind]

    failed = 0
    if options.answers is not None:
        answers = _answers_from_file(Path(options.answers), len(examples))
        source = f"the file {options.answers}"
    else:
        advance = step(f"answers from {options.model}", len(examples)) if step else None
        answers, failed = _answers_from_endpoint([e.messages for e in examples], options, advance)
        source = f"{options.model} at {options.endpoint}"

    if task == "generation":
        if step:
            step("BLEU, chrF, ROUGE-L, BERTScore", None)
        metrics = generation_metrics([e.reference for e in examples], answers,
                                     bertscore_model=options.bertscore_model)
        metrics["perplexity"] = _perplexity(examples, options, step)
        scores = metrics["per_example"]["rouge_l"]
    elif task == "classification":
        predicted = [parse_label(a, labels) for a in answers]
        metrics = classification_metrics([e.reference for e in examples], predicted, labels=labels)
        scores = [float(p == e.reference) for p, e in zip(predicted, examples)]
    else:
        truth = [[(s["start"], s["end"], s["label"]) for s in json.loads(e.reference)] for e in examples]
        found = [parse_spans(a, e.text) for a, e in zip(answers, examples)]
        metrics = ner_metrics([e.text for e in examples], truth, found)
        scores = [float(set(t) == set(f)) for t, f in zip(truth, found)]
    shown = [{"prompt": e.messages[-1].get("content", "") if e.messages else "", "reference": e.reference,
              "answer": a, "score": s} for e, a, s in zip(examples, answers, scores)]
    return _finish(split, options, metrics, shown, task=task, kind=kind, source=source, failed=failed)


def _finish(split: Path, options: EvaluationOptions, metrics: dict, shown: list[dict], *, task: str, kind: str,
            source: str, failed: int) -> EvaluationResult:
    """The run's metadata into ``metrics``, then metrics.json, plots and report.html beside earlier runs."""
    name = _run_name(options)
    root = Path(options.out) if options.out else split.parent / "evaluations"
    directory = root / name
    split_bytes = split.read_bytes()
    metrics.update({
        "name": name, "task": task, "kind": kind, "answers_from": source, "failed_answers": failed,
        "split": {"path": str(split), "sha256": hashlib.sha256(split_bytes).hexdigest()},
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    })
    earlier = earlier_runs(root, metrics["split"]["sha256"], exclude=directory)
    report = write_report(directory, metrics, shown, earlier)
    return EvaluationResult(metrics, report, earlier)

