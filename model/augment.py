"""Synthetic variants of annotated texts for `labelloop augment`.

Methods (``METHODS``):

- ``paraphrase``: a rewrite with the same meaning from an OpenAI-compatible endpoint (the one
  the LLM prelabels use), at a sampling temperature so that several differ;
- AugLy's text augmentations (``augly.text``, Meta's library): ``typos`` (keyboard typos),
  ``char-swaps`` (swapped, dropped and repeated characters), ``contractions`` ("do not" ->
  "don't") and ``punctuation`` (punctuation inserted inside words).

A variant equal to its source, to another variant, or empty is not kept, so a method may give
fewer than ``n`` (contractions give at most one). AugLy's randomness is seeded per text and try:
the same texts give the same variants.
"""
from __future__ import annotations

import hashlib
import random
import re
from typing import Sequence

import numpy as np

METHODS = ("paraphrase", "typos", "char-swaps", "contractions", "punctuation")
AUGLY_METHODS = METHODS[1:]

PARAPHRASE_SYSTEM = ("Rewrite the user's text so that it says the same thing in different words. Keep its meaning, "
                     "tone, language and length. Answer with the rewritten text only.")


def _augly_once(text: str, method: str) -> str:
    try:
        import augly.text as txtaugs
    except ImportError as exc:  # python-magic without the system's libmagic
        raise RuntimeError(f"AugLy cannot be loaded ({exc}); it needs libmagic: apt-get install libmagic1") from exc

    if method == "typos":
        out = txtaugs.simulate_typos(text, aug_word_p=0.15, typo_type="keyboard")
    elif method == "char-swaps":
        out = txtaugs.simulate_typos(text, aug_word_p=0.15, typo_type="charmix")
    elif method == "contractions":
        out = txtaugs.contractions(text, aug_p=1.0)
    elif method == "punctuation":
        out = txtaugs.insert_punctuation_chars(text, granularity="word", cadence=3.0)
    else:
        raise ValueError(f"unknown AugLy method {method!r}; choose one of {', '.join(AUGLY_METHODS)}")
    return out[0] if isinstance(out, list) else out


def augly_variants(text: str, *, method: str, n: int, seed: int = 0, max_tries: int = 5) -> list[str]:
    """Up to ``n`` distinct variants of ``text`` by the AugLy ``method`` (see the module docstring)."""
    if method not in AUGLY_METHODS:
        raise ValueError(f"unknown AugLy method {method!r}; choose one of {', '.join(AUGLY_METHODS)}")
    out: list[str] = []
    for attempt in range(max(n, 1) * max_tries):
        if len(out) >= n:
            break
        digest = hashlib.sha256(f"{seed}\0{method}\0{attempt}\0{text}".encode("utf-8")).digest()
        state = int.from_bytes(digest[:4], "little")
        random.seed(state)
        np.random.seed(state)
        variant = _augly_once(text, method)
        if isinstance(variant, str) and variant.strip() and variant != text and variant not in out:
            out.append(variant)
        if method == "contractions":
            break  # deterministic: one try says it all
    return out


def synthetic_source(data: dict | None) -> int | None:
    """The source task id a variant's task data names in ``synthetic_of``; None for a task of the
    user's own (or a value that is no task id)."""
    source = (data or {}).get("synthetic_of")
    if source in (None, ""):
        return None
    try:
        return int(source)
    except (TypeError, ValueError):
        return None


def without_variants(tasks: list[dict]) -> tuple[list[dict], set[int]]:
    """``(the tasks that are no variant, the variants' ids)`` of task dicts with ``id`` and
    ``data``. Prelabelling leaves variants alone: their prediction is their source's label."""
    variants = {task["id"] for task in tasks if synthetic_source(task.get("data")) is not None}
    return [task for task in tasks if task["id"] not in variants], variants


def paraphrase_messages(text: str) -> list[dict]:
    return [{"role": "system", "content": PARAPHRASE_SYSTEM}, {"role": "user", "content": text}]


_PREFIX = re.compile(r"^\s*(?:here(?:'s| is) (?:a |the )?(?:rewritten|paraphrased) (?:text|version)\s*:|"
                     r"(?:rewritten|paraphrased)(?: text| version)?\s*:|paraphrase\s*:)\s*", re.I)


def clean_paraphrase(answer: str | None, source: str) -> str | None:
    """The rewrite in a model's answer, or None when it is not a usable variant of ``source``
    (empty, the source itself, or a runaway several times longer)."""
    if not answer:
        return None
    text = _PREFIX.sub("", answer.strip()).strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'“”":
        text = text[1:-1].strip()
    text = text.strip("“”").strip()
    if not text or text.casefold() == source.strip().casefold() or len(text) > 3 * len(source) + 80:
        return None
    return text


def distinct(variants: Sequence[str | None], source: str, n: int) -> list[str]:
    """The first ``n`` usable variants, each once."""
    out: list[str] = []
    for variant in variants:
        if variant and variant != source and variant not in out:
            out.append(variant)
    return out[:n]
