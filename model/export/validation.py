"""Checks a fine-tuning file line by line, as OpenAI's data-preparation cookbook does.

Every JSONL format is first checked for its own keys, then viewed as one or more chats (lists of
``{"role", "content"}`` messages) that all get the cookbook's checks: known keys and roles, an
optional system message then user/assistant turns ending on the assistant, non-empty content
``weight`` only on assistant messages and only 0 or 1, and a token count under the limit.
Something that looks like an unfilled template placeholder (``{text}``, ``$prompt``) is a
warning, not an error: code and templates in real prompts legitimately hold braces.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from .tokens import TokenCounter

MIN_EXAMPLES = 10       # OpenAI refuses fewer
RECOMMENDED_EXAMPLES = 50
DEFAULT_MAX_TOKENS = 16385  # the cookbook's per-example limit

MESSAGE_KEYS = {"role", "content", "name", "weight", "function_call", "tool_calls", "tool_call_id"}
ROLES = {"system", "user", "assistant", "tool", "function"}
_PLACEHOLDER = re.compile(
    r"\{\{\s*[\w.]+\s*\}\}|\{(?:text|labels?|prompt|input|output|response|instruction|question|answer)\}"
    r"|^\$[A-Za-z_]\w*$")
WARNING_CODES = frozenset({"unfilled_placeholder"})
_SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}


@dataclass
class ValidationReport:
    """``errors``: ``(line number, code, message)``, 1-based lines; ``tokens``: per example."""

    path: str
    format: str
    tokenizer: str
    max_tokens: int
    n_examples: int = 0
    errors: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    tokens: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def error_counts(self) -> dict:
        return dict(Counter(code for _, code, _ in self.errors))

    def token_stats(self) -> dict:
        if not self.tokens:
            return {}
        t = np.asarray(self.tokens)
        return {"min": int(t.min()), "mean": round(float(t.mean()), 1), "p95": int(np.percentile(t, 95)),
                "max": int(t.max()), "total": int(t.sum())}


def detect_format(record) -> str:
    """Best guess of a JSONL record's format from its keys."""
    if not isinstance(record, dict):
        return "openai-chat"
    if "preferred_output" in record or "non_preferred_output" in record:
        return "openai-dpo"
    if "chosen" in record and "prompt" in record:
        return "messages"
    if "conversations" in record:
        return "sharegpt"
    if "instruction" in record or "output" in record:
        return "alpaca"
    if "text" in record and "label" in record:
        return "classification-jsonl"
    return "openai-chat"


def check_messages(messages, *, final_role: str = "assistant") -> list[tuple[str, str]]:
    """Cookbook checks on one chat; returns ``(code, message)`` problems."""
    problems = []
    if not isinstance(messages, list) or not messages:
        return [("missing_messages_list", "no non-empty 'messages' list")]
    roles = []
    for k, message in enumerate(messages):
        if not isinstance(message, dict):
            problems.append(("message_data_type", f"message {k} is not an object"))
            continue
        if "role" not in message or ("content" not in message and not message.get("tool_calls")):
            problems.append(("message_missing_key", f"message {k} lacks 'role' or 'content'"))
        unknown = set(message) - MESSAGE_KEYS
        if unknown:
            problems.append(("message_unrecognized_key", f"message {k} has unknown keys {sorted(unknown)}"))
        role = message.get("role")
        if role not in ROLES:
            problems.append(("unrecognized_role", f"message {k} has role {role!r}"))
        content = message.get("content")
        if "content" in message and (not isinstance(content, str) or not content.strip()):
            problems.append(("missing_content", f"message {k} ({role}) has empty or non-text content"))
        elif isinstance(content, str) and (placeholder := _PLACEHOLDER.search(content)):
            problems.append(("unfilled_placeholder",
                             f"message {k} ({role}) holds a template placeholder {placeholder.group()!r}"))
        if "weight" in message:
            if role != "assistant":
                problems.append(("invalid_weight", f"message {k}: 'weight' is only allowed on assistant messages"))
            elif message["weight"] not in (0, 1) or isinstance(message["weight"], bool):
                problems.append(("invalid_weight", f"message {k}: 'weight' must be 0 or 1"))
        if role in ("system", "user", "assistant"):
            roles.append(role)
    turns = roles[1:] if roles[:1] == ["system"] else roles
    expected = ["user" if i % 2 == 0 else "assistant" for i in range(len(turns))]
    if "system" in turns or turns != expected:
        problems.append(("role_order", "roles must be an optional system message, then user and assistant "
                                       f"turns alternating from user; got {roles}"))
    elif not turns or turns[-1] != final_role:
        code = "example_missing_assistant_message" if final_role == "assistant" else "role_order"
        problems.append((code, f"the chat must end with a message from the {final_role}; got {roles}"))
    return problems


def _one_assistant(value, name: str) -> list[tuple[str, str]]:
    if not (isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict)
            and value[0].get("role") == "assistant"):
        return [("invalid_preference", f"'{name}' must be a list holding one assistant message")]
    content = value[0].get("content")
    if not isinstance(content, str) or not content.strip():
        return [("missing_content", f"'{name}' has empty content")]
    return []


def as_chats(record, fmt: str) -> tuple[list[list[dict]], list[tuple[str, str]]]:
    """The chats a record stands for (to check and count), and problems with its own keys."""
    if not isinstance(record, dict):
        return [], [("data_type", f"each line must be a JSON object, got {type(record).__name__}")]

    def unknown(allowed):
        extra = set(record) - allowed
        return [("unknown_key", f"unknown keys {sorted(extra)} for {fmt}")] if extra else []

    if fmt in ("openai-chat", "messages") and "chosen" not in record:
        return [record.get("messages")], unknown({"messages", "tools", "parallel_tool_calls", "functions"})
    if fmt in ("openai-dpo", "messages"):
        if fmt == "openai-dpo":
            prompt = (record.get("input") or {}).get("messages") if isinstance(record.get("input"), dict) else None
            keys = ("preferred_output", "non_preferred_output")
            problems = unknown({"input", "preferred_output", "non_preferred_output"})
        else:
            prompt, keys = record.get("prompt"), ("chosen", "rejected")
            problems = unknown({"prompt", "chosen", "rejected"})
        problems += [("missing_messages_list", "the prompt has no non-empty messages list")] \
            if not isinstance(prompt, list) or not prompt else check_messages(prompt, final_role="user")
        for key in keys:
            problems += _one_assistant(record.get(key), key)
        if not problems and record[keys[0]][0]["content"].strip() == record[keys[1]][0]["content"].strip():
            problems.append(("invalid_preference", "the preferred and non-preferred responses are identical"))
        chats = [prompt + record[key] for key in keys] if not problems else []
        return chats, problems
    if fmt == "sharegpt":
        turns = record.get("conversations")
        if not isinstance(turns, list) or not all(isinstance(t, dict) for t in turns):
            return [], [("missing_messages_list", "'conversations' must be a list of {from, value} objects")]
        bad = sorted({str(t.get("from")) for t in turns} - set(_SHAREGPT_ROLES))
        problems = unknown({"conversations", "system", "tools"})
        if bad:
            problems.append(("unrecognized_role", f"unknown 'from' values {bad}"))
        return [[{"role": _SHAREGPT_ROLES.get(t.get("from"), str(t.get("from"))), "content": t.get("value")}
                 for t in turns]], problems
    if fmt == "alpaca":
        problems = unknown({"instruction", "input", "output", "system", "history"})
        for key in ("instruction", "output"):
            if not isinstance(record.get(key), str) or not record[key].strip():
                problems.append(("missing_content", f"'{key}' is missing or empty"))
        if not isinstance(record.get("input", ""), str):
            problems.append(("data_type", "'input' must be a string"))
        if problems:
            return [], problems
        user = record["instruction"] + (f"\n\n{record['input']}" if record.get("input") else "")
        system = [{"role": "system", "content": record["system"]}] if record.get("system") else []
        return [system + [{"role": "user", "content": user}, {"role": "assistant", "content": record["output"]}]], []
    if fmt == "classification-jsonl":
        problems = unknown({"text", "label"})
        label = record.get("label")
        labels = label if isinstance(label, list) else [label]
        if not isinstance(record.get("text"), str) or not record["text"].strip():
            problems.append(("missing_content", "'text' is missing or empty"))
        if not labels or not all(isinstance(v, str) and v.strip() for v in labels):
            problems.append(("missing_content", "'label' must be a non-empty string or list of strings"))
        if problems:
            return [], problems
        return [[{"role": "user", "content": record["text"]}, {"role": "assistant", "content": ", ".join(labels)}]], []
    return [], [("unknown_format", f"unknown format {fmt!r}")]


def validate_lines(lines: Iterable[str], *, fmt: str | None = None, counter: TokenCounter,
                   max_tokens: int = DEFAULT_MAX_TOKENS, path: str = "<lines>",
                   min_examples: int = MIN_EXAMPLES) -> ValidationReport:
    """Check every JSONL line; ``fmt`` None detects it from the first record. Fewer than
    ``min_examples`` is an error (OpenAI's floor for a training file), fewer than 50 a warning."""
    if fmt == "conll":
        return validate_conll_lines(lines, path=path, tokenizer=counter.name, min_examples=min_examples)
    report = ValidationReport(path, fmt or "auto", counter.name, max_tokens)
    pending = []  # (line number, chats) to count tokens for in one batch
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        report.n_examples += 1
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            report.errors.append((number, "invalid_json", f"not valid JSON: {exc.msg}"))
            continue
        if report.format == "auto":
            report.format = detect_format(record)
        chats, problems = as_chats(record, report.format)
        for chat in chats:
            problems = problems + check_messages(chat)
        report.warnings += [f"line {number}: {message}" for code, message in problems if code in WARNING_CODES]
        problems = [(code, message) for code, message in problems if code not in WARNING_CODES]
        report.errors += [(number, code, message) for code, message in problems]
        if not problems and chats:
            pending.append((number, chats))
    counts = iter(counter.count_chats([chat for _, chats in pending for chat in chats]))
    for number, chats in pending:
        longest = max(next(counts) for _ in chats)
        report.tokens.append(longest)
        if longest > max_tokens:
            report.errors.append((number, "too_many_tokens", f"{longest} tokens, over the limit of {max_tokens}"))
    _check_size(report, min_examples)
    return report


def _check_size(report: ValidationReport, min_examples: int) -> None:
    if report.n_examples < min_examples:
        report.errors.append((0, "too_few_examples",
                              f"{report.n_examples} examples; at least {min_examples} are required"))
    elif report.n_examples < RECOMMENDED_EXAMPLES:
        report.warnings.append(f"{report.n_examples} examples; at least {RECOMMENDED_EXAMPLES} are recommended")


_BIO = re.compile(r"^(O|[BI]-\S+)$")


def validate_conll_lines(lines: Iterable[str], *, path: str = "<lines>", tokenizer: str = "",
                         min_examples: int = MIN_EXAMPLES) -> ValidationReport:
    """CoNLL/BIO: ``token<TAB>tag`` lines, sentences separated by a blank line, and every ``I-X``
    continuing a ``B-X`` or ``I-X``."""
    report = ValidationReport(path, "conll", tokenizer, 0)
    previous, length = "O", 0
    for number, line in enumerate(list(lines) + [""], start=1):
        if not line.strip():
            if length:
                report.n_examples += 1
                report.tokens.append(length)
            previous, length = "O", 0
            continue
        parts = line.split("\t")
        if len(parts) != 2 or not parts[0] or not _BIO.match(parts[1]):
            report.errors.append((number, "invalid_conll_line", f"expected 'token<TAB>O|B-X|I-X', got {line!r}"))
        elif parts[1].startswith("I-") and previous[2:] != parts[1][2:]:
            report.errors.append((number, "invalid_bio", f"{parts[1]} does not continue an entity (after {previous})"))
        previous = parts[1] if len(parts) == 2 else "O"
        length += 1
    _check_size(report, min_examples)
    return report


def validate_file(path, *, fmt: str | None = None, counter: TokenCounter, max_tokens: int = DEFAULT_MAX_TOKENS,
                  min_examples: int = MIN_EXAMPLES) -> ValidationReport:
    """`validate_lines` over a JSONL file; undecodable bytes are an error, not a crash."""
    path = Path(path)
    if fmt is None and path.suffix == ".conll":
        fmt = "conll"
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        report = ValidationReport(str(path), fmt or "auto", counter.name, max_tokens)
        report.errors.append((0, "encoding", f"the file is not UTF-8: {exc}"))
        return report
    return validate_lines(text.splitlines(), fmt=fmt, counter=counter, max_tokens=max_tokens, path=str(path),
                          min_examples=min_examples)
