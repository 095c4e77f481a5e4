"""Text normalisation for fine-tuning files: whitespace, and texts nobody could learn from."""
from __future__ import annotations

import re
import unicodedata

_SPACES = re.compile(r"[^\S\n]+")           # runs of whitespace other than newlines
_BLANK_LINES = re.compile(r"\n\s*\n\s*\n+")  # three or more line breaks


def normalise_whitespace(text: str) -> str:
    """Unify line breaks, collapse runs of spaces and tabs, keep at most one blank line, strip.

    Newlines survive: they carry structure in LLM responses (lists, code)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def unintelligible_reason(text) -> str | None:
    """Why ``text`` is unusable as training text, or None when it is fine.

    Empty, no letter or digit at all, or mostly replacement / control characters (a decoding
    accident such as non-UTF-8 bytes read as UTF-8).
    """
    if not isinstance(text, str):
        return f"not text ({type(text).__name__})"
    stripped = text.strip()
    if not stripped:
        return "empty"
    if not any(ch.isalnum() for ch in stripped):
        return "no letters or digits"
    broken = sum(ch == "\ufffd" or (unicodedata.category(ch) == "Cc" and ch not in "\n\t") for ch in stripped)
    if broken / len(stripped) > 0.1:
        return "mostly undecodable characters"
    return None
