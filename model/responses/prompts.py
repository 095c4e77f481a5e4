"""Prompt templates: ``{field}`` placeholders filled from a task's data.

Templates come from HTTP (the ML backend's extra params), so they are hostile input: a
placeholder must be a plain field name, with no attribute access, index, conversion or format
spec (``{x.__class__}`` or ``{x:>999999999}`` would reach into objects or allocate without bound).
"""
from __future__ import annotations

import hashlib
import json
import re
import string
from dataclasses import dataclass

from labelloop.model.errors import LabelloopError

_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class TemplateError(LabelloopError, ValueError):
    """A prompt template that cannot be used (bad placeholder, or a field the data lacks)."""


@dataclass(frozen=True)
class PromptTemplate:
    """A user message ``template`` and an optional ``system`` message.

    ``fields`` are the placeholders, in order of first use. Raises `TemplateError` for a
    placeholder that is not a plain field name.
    """

    template: str
    system: str = ""

    def __post_init__(self):
        if not isinstance(self.template, str) or not self.template.strip():
            raise TemplateError("the prompt template is empty")
        if not isinstance(self.system, str):
            raise TemplateError("the system prompt must be text")
        try:
            parsed = list(string.Formatter().parse(self.template))
        except ValueError as exc:
            raise TemplateError(f"the prompt template is malformed ({exc}); write a literal brace as {{{{ or }}}}") from None
        for _, name, spec, conversion in parsed:
            if name is None:
                continue
            if not _FIELD.match(name) or spec or conversion:
                raise TemplateError(f"prompt template placeholder {{{name}{'!' + conversion if conversion else ''}"
                                    f"{':' + spec if spec else ''}}} is not allowed: use a task data field name "
                                    "such as {prompt}")

    @property
    def fields(self) -> tuple[str, ...]:
        names = [name for _, name, _, _ in string.Formatter().parse(self.template) if name]
        return tuple(dict.fromkeys(names))

    @property
    def digest(self) -> str:
        """Changes whenever the template or the system prompt changes."""
        return hashlib.sha1(json.dumps([self.system, self.template]).encode()).hexdigest()[:8]

    def missing_fields(self, available) -> list[str]:
        """The placeholders not in ``available`` (field names, or a task's data dict)."""
        return [name for name in self.fields if name not in available]

    def messages(self, data: dict) -> list[dict]:
        """The chat messages for one task's ``data``; raises `TemplateError` naming a missing or
        non-text field."""
        values = {}
        for name in self.fields:
            if name not in data:
                raise TemplateError(f"task data has no field {name!r} (the prompt template uses it)")
            value = data[name]
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                raise TemplateError(f"task data field {name!r} is a {type(value).__name__}, not text")
            values[name] = str(value)
        user = self.template.format_map(values)
        return ([{"role": "system", "content": self.system}] if self.system else []) + \
            [{"role": "user", "content": user}]


def messages_digest(messages: list[dict]) -> str:
    """The key of one rendered prompt: the same messages are drafted once per model version."""
    return hashlib.sha1(json.dumps(messages, ensure_ascii=False).encode("utf-8", "surrogatepass")).hexdigest()[:20]
