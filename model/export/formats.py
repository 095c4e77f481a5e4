"""Fine-tuning file formats: one labelled example in, one line (or CoNLL block) out.

An `Example` is what any project type boils down to: the user's turn (``prompt``), and the
answer, which is a written ``response`` (LLM projects, the chosen one for preference pairs), the
``labels`` (classification) or character ``spans`` (NER). `render` turns it into a format's record.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import regex

from ..errors import LabelloopError

#: format -> project kinds it can be written for
FORMATS = {
    "openai-chat": {"llm", "preference", "classification", "ner"},
    "openai-dpo": {"preference"},
    "messages": {"llm", "preference", "classification", "ner"},
    "alpaca": {"llm", "preference", "classification", "ner"},
    "sharegpt": {"llm", "preference", "classification", "ner"},
    "classification-jsonl": {"classification"},
    "conll": {"ner"},
}

#: how messages name each project kind of `FORMATS`: (article, name)
KIND_NAMES = {"classification": ("a", "text classification"), "ner": ("an", "NER"), "llm": ("an", "LLM response"),
              "preference": ("a", "preference pair")}

DEFAULT_INSTRUCTIONS = {
    "classification": "Classify the text. Answer with one of these labels: {labels}.",
    "multi_label": "Classify the text. Answer with every label that applies, separated by commas, from: {labels}.",
    "ner": ("Find the named entities in the text ({labels}). Answer with a JSON list of objects with the "
            "keys text, label, start and end (character offsets)."),
}


class FormatError(LabelloopError):
    """A format that does not exist, or does not fit the project type."""


@dataclass(frozen=True)
class Example:
    """One exportable example. ``spans``: ``(start, end, label)`` offsets into ``prompt``."""

    task_id: int
    prompt: str
    response: str | None = None
    rejected: str | None = None
    labels: tuple[str, ...] = ()
    spans: tuple[tuple[int, int, str], ...] = ()
    #: the task a synthetic variant (`labelloop augment`) was made from; None for the user's own
    synthetic_of: int | None = None

    @property
    def stratum(self) -> str:
        """What a split stratifies by: the label set (classification) or nothing."""
        return "|".join(self.labels)


@dataclass(frozen=True)
class RenderOptions:
    """``system``: optional system message. ``instruction``: for classification and NER, put
    before the text in the user's turn; ``{labels}`` is filled with the label names."""

    kind: str
    label_names: tuple[str, ...] = ()
    multi_label: bool = False
    system: str | None = None
    instruction: str | None = None

    def instruction_text(self) -> str | None:
        key = "multi_label" if self.multi_label else self.kind
        if key not in DEFAULT_INSTRUCTIONS:
            return None  # the prompt is the whole user turn
        template = self.instruction or DEFAULT_INSTRUCTIONS[key]
        return template.replace("{labels}", ", ".join(self.label_names))


def check_format(fmt: str, kind: str | None = None) -> None:
    """Raise `FormatError` unless ``fmt`` exists and (when ``kind`` is given) fits projects of ``kind``."""
    if fmt not in FORMATS:
        raise FormatError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if kind is not None and kind not in FORMATS[fmt]:
        fits = [f for f, kinds in FORMATS.items() if kind in kinds]
        article, name = KIND_NAMES.get(kind, ("a", kind))
        fit = ", ".join(KIND_NAMES[k][1] for k in sorted(FORMATS[fmt]))
        raise FormatError(f"format {fmt!r} does not fit {article} {name} project; it fits {fit} projects. "
                          f"For this project use: {', '.join(fits)}")


def answer_text(example: Example) -> str:
    """What the assistant answers: the written response, else the labels, else the spans as JSON."""
    if example.response is not None:
        return example.response
    if example.labels:
        return ", ".join(example.labels)
    return json.dumps([{"text": example.prompt[s:e], "label": label, "start": s, "end": e}
                       for s, e, label in example.spans], ensure_ascii=False)


def user_text(example: Example, opts: RenderOptions) -> str:
    instruction = opts.instruction_text()
    return f"{instruction}\n\n{example.prompt}" if instruction else example.prompt


def _chat(example: Example, opts: RenderOptions, answer: str | None = None) -> list[dict]:
    messages = [{"role": "system", "content": opts.system}] if opts.system else []
    messages.append({"role": "user", "content": user_text(example, opts)})
    if answer is not None:
        messages.append({"role": "assistant", "content": answer})
    return messages


def render(example: Example, fmt: str, opts: RenderOptions):
    """The record for one example: a dict (JSONL formats) or a string (a CoNLL block)."""
    answer = answer_text(example)
    if fmt == "openai-chat" or (fmt == "messages" and example.rejected is None):
        return {"messages": _chat(example, opts, answer)}
    if fmt == "messages":  # TRL's conversational preference format
        return {"prompt": _chat(example, opts), "chosen": [{"role": "assistant", "content": answer}],
                "rejected": [{"role": "assistant", "content": example.rejected or ""}]}
    if fmt == "openai-dpo":
        return {"input": {"messages": _chat(example, opts)},
                "preferred_output": [{"role": "assistant", "content": answer}],
                "non_preferred_output": [{"role": "assistant", "content": example.rejected or ""}]}
    if fmt == "alpaca":
        instruction = opts.instruction_text()
        record = {"instruction": instruction or example.prompt, "input": example.prompt if instruction else "",
                  "output": answer}
        return {**record, "system": opts.system} if opts.system else record
    if fmt == "sharegpt":
        turns = [{"from": "system", "value": opts.system}] if opts.system else []
        return {"conversations": turns + [{"from": "human", "value": user_text(example, opts)},
                                          {"from": "gpt", "value": answer}]}
    if fmt == "classification-jsonl":
        return {"text": example.prompt, "label": list(example.labels) if opts.multi_label else example.labels[0]}
    if fmt == "conll":
        return conll_block(example.prompt, example.spans)
    raise FormatError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


# words (accents and other combining marks inside them), else one user-perceived character:
# `regex`'s \w and \X keep "Cafe\u0301", a flag or a ZWJ family emoji whole, where `re` split
# them into a bare mark or joiner on a line of its own
_TOKEN = regex.compile(r"\w+(?:['’-]\w+)*|(?!\s)\X")


def outermost(spans) -> list:
    """The spans CoNLL can hold (one tag per token): longest first, then those that overlap no
    span already kept; in order of start."""
    kept: list = []
    for span in sorted(spans, key=lambda s: (-(s[1] - s[0]), s[0])):
        if all(span[1] <= k[0] or span[0] >= k[1] for k in kept):
            kept.append(span)
    return sorted(kept)


def conll_block(text: str, spans) -> str:
    """``token\\tBIO-tag`` lines for ``text``; a token inside a span gets its label, ``B-`` on the
    span's first token. Of nested or overlapping spans, the outermost is kept (`outermost`)."""
    lines = []
    spans = outermost(spans)
    for match in _TOKEN.finditer(text):
        start, end = match.span()
        tag = "O"
        for s, e, label in spans:
            if start < e and end > s:  # the token overlapping the span's start opens it
                tag = f"{'B' if start <= s else 'I'}-{label}"
                break
        lines.append(f"{match.group()}\t{tag}")
    return "\n".join(lines) + "\n"
