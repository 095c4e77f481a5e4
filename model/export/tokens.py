"""Token counts for fine-tuning files, with the tokenizer the user's model would use.

``"auto"`` prefers tiktoken's ``o200k_base`` (the GPT-4o family that OpenAI fine-tunes) when its
encoding file is already cached (``TIKTOKEN_CACHE_DIR``): tiktoken downloads it otherwise, and
these machines are offline. Failing that, it falls back to the local Hugging Face tokenizer of
the default encoder. The counter's ``name`` says which one was used, so reports can state it.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from typing import Callable, Sequence

from ..errors import LabelloopError

TIKTOKEN_DEFAULT = "o200k_base"
_TIKTOKEN_URL = "https://openaipublic.blob.core.windows.net/encodings/{}.tiktoken"


class TokenizerUnavailable(LabelloopError):
    """The requested tokenizer cannot be loaded offline."""


@dataclass
class TokenCounter:
    """``count_many(texts) -> list[int]``; ``name`` describes the tokenizer, e.g. ``"tiktoken o200k_base"``."""

    name: str
    count_many: Callable[[Sequence[str]], list[int]]

    def count(self, text: str) -> int:
        return self.count_many([text])[0]

    def count_chats(self, chats: Sequence[Sequence[dict]]) -> list[int]:
        """Tokens per chat, counted as OpenAI's cookbook does: 3 per message for the framing, the
        role and content tokens, and 3 priming the reply. One tokenizer call for all chats."""
        texts = [str(m.get(key) or "") for chat in chats for m in chat for key in ("role", "content")]
        distinct = list(dict.fromkeys(texts))  # roles, system prompts and repeats: tokenised once
        known = dict(zip(distinct, self.count_many(distinct))) if distinct else {}
        counts = (known[text] for text in texts)
        return [3 * len(chat) + 3 + sum(next(counts) + next(counts) for _ in chat) for chat in chats]


def _tiktoken_cached(encoding: str) -> bool:
    cache_dir = os.environ.get("TIKTOKEN_CACHE_DIR", os.environ.get(
        "DATA_GYM_CACHE_DIR", os.path.join(tempfile.gettempdir(), "data-gym-cache")))
    key = hashlib.sha1(_TIKTOKEN_URL.format(encoding).encode()).hexdigest()
    return bool(cache_dir) and os.path.exists(os.path.join(cache_dir, key))


def _tiktoken(encoding: str) -> TokenCounter:
    import tiktoken

    if not _tiktoken_cached(encoding):
        raise TokenizerUnavailable(
            f"tiktoken's {encoding} encoding file is not cached (this machine cannot download it); "
            "put it in TIKTOKEN_CACHE_DIR or pass a local Hugging Face tokenizer")
    enc = tiktoken.get_encoding(encoding)
    return TokenCounter(f"tiktoken {encoding}",
                        lambda texts: [len(ids) for ids in enc.encode_ordinary_batch(list(texts))])


def _huggingface(name: str) -> TokenCounter:
    from transformers import AutoTokenizer

    from ..embeddings import resolve_model_path, short_model_name

    try:
        tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(name))
    except (OSError, ValueError) as exc:
        raise TokenizerUnavailable(f"tokenizer {name!r} could not be loaded offline: {exc}") from None
    if tokenizer.is_fast:  # the bare Rust tokenizer: no padding or truncation from its file, no id lists
        from tokenizers import Tokenizer

        backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
        backend.no_truncation()
        backend.no_padding()

        def count_many(texts):
            return [len(encoding) for encoding in backend.encode_batch(list(texts), add_special_tokens=False)]
    else:
        tokenizer.model_max_length = 10 ** 9  # counting only: no truncation, no length warnings

        def count_many(texts):
            return [len(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]

    return TokenCounter(f"Hugging Face {short_model_name(name)}", count_many)


def token_counter(spec: str = "auto") -> TokenCounter:
    """``"auto"``; ``"tiktoken"`` or ``"tiktoken:<encoding>"``; or a Hugging Face name or local path
    (``"default"`` is the bundled all-MiniLM-L6-v2 tokenizer)."""
    if spec in (None, "", "auto"):
        if _tiktoken_cached(TIKTOKEN_DEFAULT):
            return _tiktoken(TIKTOKEN_DEFAULT)
        counter = _huggingface("default")
        counter.name += f" (tiktoken {TIKTOKEN_DEFAULT} is not cached offline)"
        return counter
    if spec == "tiktoken" or spec.startswith("tiktoken:"):
        return _tiktoken(spec.partition(":")[2] or TIKTOKEN_DEFAULT)
    return _huggingface(spec)
