"""Text hygiene, in one place for every command: what annotators wrote stays as they wrote it.

- `clean_text`: the one function every command (predict, train, audit, export) runs on text from
  Label Studio. Lone surrogates and control characters crash UTF-8 encoders and hashing, and
  mean nothing to a tokenizer. Each becomes one character, so span offsets stay valid.
- `verbatim`: what an export writes: line endings unified and the ends trimmed, nothing else.
  Indentation, double spaces, tabs and blank lines are the annotator's, and are kept.
- `dedup_key`: a key that is equal for texts differing only in case, punctuation, whitespace or
  Unicode form, used to find variants that would leak across splits.
"""
from __future__ import annotations

import re
import unicodedata

# C0 controls except tab, newline and carriage return; DEL; C1 controls; lone surrogates
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_NOT_WORD = re.compile(r"[\W_]+")
# U+FFFD and the Unicode category Cc (C0, DEL, C1) except tab and newline: what a decoding accident leaves
_BROKEN = re.compile(r"[\ufffd\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean_text(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD and each control character other than
    tab and line breaks by a space. Same length in code points, so offsets into it stay valid."""
    if not isinstance(text, str):
        raise TypeError(f"clean_text takes a str, got {type(text).__name__}")
    return _CONTROL.sub(" ", _SURROGATE.sub("\ufffd", text))


def verbatim(text: str) -> str:
    """``\\r\\n`` and ``\\r`` become ``\\n``; everything else is kept (`clean_text` aside), the
    ends too: a first line's indentation can be code, or a Markdown code block."""
    return clean_text(text).replace("\r\n", "\n").replace("\r", "\n")


def dedup_key(text: str) -> str:
    """Case-folded NFKC words joined by single spaces: punctuation and whitespace do not count."""
    return " ".join(_NOT_WORD.sub(" ", unicodedata.normalize("NFKC", clean_text(text)).casefold()).split())


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
    if len(_BROKEN.findall(stripped)) / len(stripped) > 0.1:
        return "mostly undecodable characters"
    return None
