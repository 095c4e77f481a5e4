"""Reading an exported split back: the prompt turns and the reference answer of each line.

Every JSONL format `labelloop export` writes can be read: ``openai-chat`` and ``messages``
(the last assistant turn is the reference), ``sharegpt``, ``alpaca``, the preference formats
(the chosen answer is the reference) and ``classification-jsonl``. A ``conll`` split holds no
prompt: `read_conll` reads it, and the tags of a token classifier's answers file, as sentences
of ``(token, tag)``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..export.formats import DEFAULT_INSTRUCTIONS, RenderOptions
from .metrics import EvaluationError


@dataclass(frozen=True)
class TestExample:
    """``messages``: the turns before the answer; ``reference``: the answer the annotators wrote;
    ``text``: the user's text without the export's instruction (classification, NER)."""

    messages: tuple
    reference: str
    text: str


def _turns(record: dict, line_no: int) -> tuple[list[dict], str]:
    def chat(messages):
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            raise EvaluationError(f"line {line_no}: 'messages' must be a list of turns")
        return messages

    if "messages" in record:
        messages = chat(record["messages"])
        if messages[-1].get("role") != "assistant":
            raise EvaluationError(f"line {line_no}: the last turn is not the assistant's answer")
        return messages[:-1], str(messages[-1].get("content") or "")
    if "chosen" in record and "prompt" in record:  # TRL preference
        return chat(record["prompt"]), str(chat(record["chosen"])[-1].get("content") or "")
    if "preferred_output" in record:  # OpenAI DPO
        return chat(record["input"]["messages"]), str(chat(record["preferred_output"])[-1].get("content") or "")
    if "conversations" in record:
        roles = {"system": "system", "human": "user", "gpt": "assistant"}
        turns = [{"role": roles.get(t.get("from"), "user"), "content": t.get("value", "")}
                 for t in record["conversations"]]
        return turns[:-1], str(turns[-1]["content"])
    if "instruction" in record and "output" in record:
        user = f"{record['instruction']}\n\n{record['input']}" if record.get("input") else record["instruction"]
        turns = [{"role": "system", "content": record["system"]}] if record.get("system") else []
        return turns + [{"role": "user", "content": user}], str(record["output"])
    raise EvaluationError(f"line {line_no}: not a record of a format labelloop exports "
                          "(openai-chat, messages, sharegpt, alpaca, openai-dpo, classification-jsonl)")


def _user_text(turns: list[dict], reference_spans: list | None) -> str:
    """The user's text without the instruction the export put before it (``instruction\\n\\ntext``):
    for NER, the cut where every reference span's text sits at its offsets."""
    user = next((str(t.get("content") or "") for t in reversed(turns) if t.get("role") == "user"), "")
    cuts = [i for i in range(len(user) - 1) if user.startswith("\n\n", i)]
    if reference_spans is None:
        return user[cuts[0] + 2:] if cuts else user
    for cut in [None, *cuts]:
        text = user if cut is None else user[cut + 2:]
        if all(isinstance(s, dict) and text[s.get("start", 0):s.get("end", 0)] == s.get("text")
               for s in reference_spans):
            return text
    return user[cuts[0] + 2:] if cuts else user


def _lines(path: Path, what: str) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise EvaluationError(f"no {what} file at {path}") from None
    except UnicodeDecodeError as exc:
        raise EvaluationError(f"{path} is not UTF-8: {exc}") from None


def is_conll(path: str | Path) -> bool:
    """Whether ``path`` is a CoNLL file: named ``.conll``, or its first line is ``token<TAB>tag``, not JSON."""
    path = Path(path)
    if path.suffix == ".conll":
        return True
    try:
        with path.open(encoding="utf-8", errors="replace") as f:
            first = next((line for line in f if line.strip()), "")
    except OSError:
        return False
    return "\t" in first and not first.lstrip().startswith(("{", "[", '"'))


def read_conll(path: str | Path, *, what: str = "split") -> list[list[tuple[str, str]]]:
    """The sentences of a CoNLL file, each a list of ``(token, tag)``: one token per line, the tag
    in the last tab-separated column, a blank line between sentences."""
    path = Path(path)
    lines = _lines(path, what)
    sentences, current = [], []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            if current:
                sentences.append(current)
            current = []
            continue
        if "\t" not in line:
            raise EvaluationError(f"{path.name} line {n} is not token<TAB>tag: {line[:60]!r}")
        token, tag = line.split("\t", 1)[0], line.rsplit("\t", 1)[1].strip()
        if tag != "O" and not (tag[:2] in ("B-", "I-") and len(tag) > 2):
            raise EvaluationError(f"{path.name} line {n}: {tag!r} is not a BIO tag (O, B-LABEL or I-LABEL)")
        current.append((token, tag))
    if current:
        sentences.append(current)
    if not sentences:
        raise EvaluationError(f"{path} holds no sentences")
    return sentences


def read_split(path: str | Path, *, kind: str, labels=()) -> list[TestExample]:
    """The examples of an exported JSONL split, in file order. ``kind``: ``llm``, ``preference``,
    ``classification`` or ``ner``; ``labels``: the project's labels (for the instruction of a
    ``classification-jsonl`` file)."""
    path = Path(path)
    lines = _lines(path, "split")
    examples = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EvaluationError(f"{path.name} line {n} is not JSON ({exc.msg}): a split is JSONL, or CoNLL "
                                  "(token<TAB>tag lines, named .conll)") from None
        if not isinstance(record, dict):
            raise EvaluationError(f"{path.name} line {n}: expected a JSON object")
        if "text" in record and "label" in record:  # classification-jsonl
            label = record["label"]
            reference = ", ".join(label) if isinstance(label, list) else str(label)
            opts = RenderOptions(kind="classification", label_names=tuple(labels), multi_label=isinstance(label, list))
            instruction = opts.instruction_text() or DEFAULT_INSTRUCTIONS["classification"]
            turns = [{"role": "user", "content": f"{instruction}\n\n{record['text']}"}]
            examples.append(TestExample(tuple(turns), reference, str(record["text"])))
            continue
        turns, reference = _turns(record, n)
        spans = None
        if kind == "ner":
            try:
                spans = json.loads(reference)
            except json.JSONDecodeError:
                raise EvaluationError(f"{path.name} line {n}: an NER answer must be the export's JSON list") from None
        text = _user_text(turns, spans) if kind in ("classification", "ner") else \
            next((str(t.get("content") or "") for t in reversed(turns) if t.get("role") == "user"), "")
        examples.append(TestExample(tuple(turns), reference, text))
    if not examples:
        raise EvaluationError(f"{path} holds no examples")
    return examples
