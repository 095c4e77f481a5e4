"""Drafts from any OpenAI-compatible chat-completions endpoint, each with an uncertainty score.

The official ``openai`` client does the HTTP: a timeout per request, and retries with
exponential backoff on connection errors, 408, 409, 429 and 5xx (``max_retries``). Requests
run ``concurrency`` at a time. A request that still fails becomes a `Draft` with an ``error``;
the other prompts of the batch are unaffected.

A draft's ``score`` follows the product's rule (lower means "ask a human first"):

- ``"logprobs"``: the geometric mean token probability, ``exp(mean token log-probability)``,
  when the endpoint returns ``logprobs``;
- ``"self-consistency"``: otherwise, ``samples - 1`` more answers are sampled and the score is
  the mean cosine similarity of their embeddings to the draft (``samples = 1`` turns it off);
- ``"none"``: neither is available; every draft scores 0.5.
"""
from __future__ import annotations

import logging
import math
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields, replace
from typing import Callable, Sequence

import numpy as np

from labelloop.model.env import env_number
from labelloop.model.errors import LabelloopError

logger = logging.getLogger(__name__)

NEUTRAL_SCORE = 0.5
CHARS_PER_TOKEN = 3.0  # conservative for English (about 4); emoji or CJK text can need more, and the server refuses it


class LLMEndpointError(LabelloopError):
    """The endpoint cannot be used: unreachable, refusing the key, too slow, or misconfigured."""


@dataclass(frozen=True)
class LLMConfig:
    """How drafts are made. ``from_env`` reads it; ``with_params`` applies a project's extra params.

    ====================  ==================================  ====================================
    field                 environment variable                meaning
    ====================  ==================================  ====================================
    base_url              LABELLOOP_LLM_BASE_URL              endpoint, e.g. http://host:8000/v1
                                                              (empty: OpenAI's own)
    model                 LABELLOOP_LLM_MODEL                 model name the endpoint serves
    api_key               LABELLOOP_LLM_API_KEY               else OPENAI_API_KEY
    system_prompt         LABELLOOP_LLM_SYSTEM_PROMPT         system message (empty: none)
    prompt_template       LABELLOOP_LLM_PROMPT_TEMPLATE       user message; {field}s from task data
                                                              (empty: the prompt field as it is)
    temperature           LABELLOOP_LLM_TEMPERATURE
    max_tokens            LABELLOOP_LLM_MAX_TOKENS            per draft
    concurrency           LABELLOOP_LLM_CONCURRENCY           requests in flight at once
    timeout_s             LABELLOOP_LLM_TIMEOUT               seconds per request
    max_retries           LABELLOOP_LLM_RETRIES               on 429, 5xx, timeouts (with backoff)
    logprobs              LABELLOOP_LLM_LOGPROBS              ask for log-probabilities (0: never)
    samples               LABELLOOP_LLM_SAMPLES               k for self-consistency (1: off)
    context_tokens        LABELLOOP_LLM_CONTEXT_TOKENS        longer prompts are skipped
    max_inline            LABELLOOP_LLM_MAX_INLINE            new drafts per /predict call
    ====================  ==================================  ====================================
    """

    base_url: str | None = None
    model: str | None = None
    api_key: str | None = None
    system_prompt: str = ""
    prompt_template: str = ""
    temperature: float = 0.2
    max_tokens: int = 256
    concurrency: int = 4
    timeout_s: float = 60.0
    max_retries: int = 3
    logprobs: bool = True
    samples: int = 3
    context_tokens: int = 4096
    max_inline: int = 4

    #: what a project may override through the ML backend's extra params in Label Studio
    PROJECT_PARAMS = ("system_prompt", "prompt_template", "temperature", "max_tokens", "samples")

    def __repr__(self) -> str:  # never log the key
        shown = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "api_key"}
        return f"LLMConfig({', '.join(f'{k}={v!r}' for k, v in shown.items())})"

    @classmethod
    def from_env(cls) -> "LLMConfig":
        env = os.environ
        config = cls(
            base_url=env.get("LABELLOOP_LLM_BASE_URL") or None,
            model=env.get("LABELLOOP_LLM_MODEL") or None,
            api_key=env.get("LABELLOOP_LLM_API_KEY") or env.get("OPENAI_API_KEY") or None,
            system_prompt=env.get("LABELLOOP_LLM_SYSTEM_PROMPT", ""),
            prompt_template=env.get("LABELLOOP_LLM_PROMPT_TEMPLATE", ""),
            temperature=env_number("LABELLOOP_LLM_TEMPERATURE", cls.temperature, float),
            max_tokens=env_number("LABELLOOP_LLM_MAX_TOKENS", cls.max_tokens, int),
            concurrency=env_number("LABELLOOP_LLM_CONCURRENCY", cls.concurrency, int),
            timeout_s=env_number("LABELLOOP_LLM_TIMEOUT", cls.timeout_s, float),
            max_retries=env_number("LABELLOOP_LLM_RETRIES", cls.max_retries, int),
            logprobs=env.get("LABELLOOP_LLM_LOGPROBS", "1").strip().lower() not in ("0", "false", "no", "off"),
            samples=env_number("LABELLOOP_LLM_SAMPLES", cls.samples, int),
            context_tokens=env_number("LABELLOOP_LLM_CONTEXT_TOKENS", cls.context_tokens, int),
            max_inline=env_number("LABELLOOP_LLM_MAX_INLINE", cls.max_inline, int),
        )
        config.validate()
        return config

    def validate(self) -> None:
        if not (0.0 <= self.temperature <= 2.0):
            raise ValueError(f"temperature must be between 0 and 2, got {self.temperature}")
        for name, low in (("max_tokens", 1), ("concurrency", 1), ("samples", 1), ("context_tokens", 16),
                          ("max_retries", 0), ("max_inline", 0)):
            if getattr(self, name) < low:
                raise ValueError(f"{name} must be at least {low}, got {getattr(self, name)}")
        if self.samples > 10 or self.concurrency > 256:
            raise ValueError("samples must be at most 10 and concurrency at most 256")
        if self.timeout_s <= 0:
            raise ValueError("the LLM timeout must be positive")

    def with_params(self, params: dict | None) -> "LLMConfig":
        """This config with a project's overrides (``PROJECT_PARAMS`` keys of ``params``);
        raises ValueError naming a value of the wrong type."""
        if not isinstance(params, dict):
            return self
        changes = {}
        for name in self.PROJECT_PARAMS:
            if name not in params or params[name] is None:
                continue
            value, default = params[name], getattr(self, name)
            try:
                if isinstance(default, str):
                    if not isinstance(value, str):
                        raise TypeError
                    changes[name] = value
                elif isinstance(value, bool) or not isinstance(value, (int, float, str)):
                    raise TypeError
                else:
                    changes[name] = type(default)(value)
            except (TypeError, ValueError):
                raise ValueError(f"extra param {name!r} must be a {type(default).__name__}, got {value!r}") from None
        config = replace(self, **changes)
        config.validate()
        return config

    def describe(self) -> str:
        return f"{self.model or '(no model)'} at {self.base_url or 'https://api.openai.com/v1'}"


@dataclass(frozen=True)
class Draft:
    """One answer: its ``text``, ``score`` in [0, 1], how the score was made, and why the
    model stopped. ``error`` is set (and ``text`` is None) when no answer came back."""

    text: str | None
    score: float = NEUTRAL_SCORE
    method: str = "none"
    finish_reason: str | None = None
    error: str | None = None


def estimated_tokens(messages: Sequence[dict]) -> int:
    """A conservative token count for ``messages`` (no tokenizer is known for an arbitrary endpoint)."""
    return sum(math.ceil(len(m["content"]) / CHARS_PER_TOKEN) + 8 for m in messages)


def logprob_score(token_logprobs: Sequence[float]) -> float | None:
    """``exp(mean log-probability)`` of the generated tokens: 1 when the model was sure of
    every token; None without tokens."""
    values = [lp for lp in token_logprobs if lp is not None and math.isfinite(lp)]
    if not values:
        return None
    return float(math.exp(sum(values) / len(values)))


def consistency_score(embeddings: np.ndarray) -> float:
    """Mean cosine similarity of rows ``1:`` to row 0 of ``embeddings`` ``(k, d)``, clipped to [0, 1]."""
    x = np.asarray(embeddings, dtype=np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    if len(x) < 2:
        return NEUTRAL_SCORE
    return float(np.clip(x[1:] @ x[0], 0.0, 1.0).mean())


def _reason(exc: Exception, config: LLMConfig) -> str:
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return f"the LLM endpoint did not answer within {config.timeout_s:g} s (LABELLOOP_LLM_TIMEOUT)"
    if isinstance(exc, openai.APIConnectionError):
        return f"cannot reach the LLM endpoint {config.describe()}: {exc.__cause__ or exc}"
    if isinstance(exc, openai.AuthenticationError):
        return (f"the LLM endpoint {config.describe()} refused the API key (401): set LABELLOOP_LLM_API_KEY "
                "(or OPENAI_API_KEY)")
    if isinstance(exc, openai.APIStatusError):
        text = str(getattr(exc, "message", exc))
        if exc.status_code == 400 and re.search(r"context|too long|exceed", text, re.I):
            return f"the prompt is too long for the model's context (the endpoint said: {text[:200]})"
        return f"the LLM endpoint answered {exc.status_code}: {text[:300]}"
    return f"{type(exc).__name__}: {exc}"


VERDICT_TOKENS = 4  # a judge's "1" or "2", with room for a space or a full stop

JUDGE_PROMPT = ("Rate how well the RESPONSE answers the PROMPT: helpful, correct, complete, and in the prompt's "
                "language. Reply with one digit from 1 (bad) to 5 (excellent), then one short sentence saying why."
                "\n\nPROMPT:\n{prompt}\n\nRESPONSE:\n{response}")


class Drafter:
    """Drafts answers to chat prompts through ``config``'s endpoint.

    Parameters
    ----------
    config : LLMConfig
    embed : callable, optional
        ``embed(texts) -> (n, d)`` array, for self-consistency scores when the endpoint
        returns no log-probabilities.
    """

    def __init__(self, config: LLMConfig, *, embed: Callable[[list[str]], np.ndarray] | None = None):
        import openai

        if not config.model:
            raise LLMEndpointError("no LLM model configured: set LABELLOOP_LLM_MODEL (and LABELLOOP_LLM_BASE_URL "
                                   "for anything but OpenAI)")
        if not config.base_url and not config.api_key:
            raise LLMEndpointError("no LLM endpoint configured: set LABELLOOP_LLM_BASE_URL (vLLM, Ollama, "
                                   "llama.cpp...) or OPENAI_API_KEY")
        self.config = config
        self.embed = embed
        # local servers need no key, but the client insists on one
        self.client = openai.OpenAI(base_url=config.base_url, api_key=config.api_key or "unused",
                                    timeout=config.timeout_s, max_retries=config.max_retries)
        self._logprobs = config.logprobs  # until the endpoint refuses them
        self._lock = threading.Lock()

    def check(self, *, timeout: float = 2.5) -> None:
        """Raise `LLMEndpointError` unless the endpoint answers and serves the model (one quick
        request, no retries: Label Studio gives /setup 3 s)."""
        import openai

        try:
            served = [m.id for m in self.client.with_options(timeout=timeout, max_retries=0).models.list()]
        except openai.APIError as exc:
            raise LLMEndpointError(_reason(exc, replace(self.config, timeout_s=timeout))) from None
        if served and self.config.model not in served:
            raise LLMEndpointError(f"the LLM endpoint {self.config.describe()} does not serve model "
                                   f"{self.config.model!r}; it serves: {', '.join(served[:10])}")

    def too_long(self, messages: Sequence[dict], *, answer_tokens: int | None = None) -> str | None:
        """Why ``messages`` cannot be drafted (empty, or over the context), or None.
        ``answer_tokens``: the reply's budget (default: ``max_tokens``, a draft's)."""
        if not any(m["content"].strip() for m in messages if m["role"] == "user"):
            return "the prompt is empty"
        need = estimated_tokens(messages) + (self.config.max_tokens if answer_tokens is None else answer_tokens)
        if need > self.config.context_tokens:
            return (f"the prompt needs about {need} tokens with the answer, over the model's context of "
                    f"{self.config.context_tokens} (LABELLOOP_LLM_CONTEXT_TOKENS)")
        return None

    def _complete(self, messages, *, temperature: float, logprobs: bool, max_tokens: int | None = None,
                  top_logprobs: int = 1):
        kwargs = dict(model=self.config.model, messages=list(messages), temperature=temperature,
                      max_tokens=self.config.max_tokens if max_tokens is None else max_tokens)
        if logprobs:
            kwargs.update(logprobs=True, top_logprobs=top_logprobs)  # llama.cpp returns none without top_logprobs
        return self.client.chat.completions.create(**kwargs).choices[0]

    def _complete_with_logprobs(self, messages, *, temperature: float, max_tokens: int | None = None,
                                top_logprobs: int = 1):
        """`_complete` asking for log-probabilities while the endpoint accepts them; its first
        refusal turns them off for this endpoint (drafts then score by self-consistency, verdicts
        by the digit written)."""
        import openai

        try:
            return self._complete(messages, temperature=temperature, logprobs=self._logprobs, max_tokens=max_tokens,
                                  top_logprobs=top_logprobs)
        except openai.BadRequestError as exc:
            if not self._logprobs or "logprob" not in str(exc).lower():
                raise
            with self._lock:
                self._logprobs = False
            logger.info("the LLM endpoint refuses logprobs; going on without them")
            return self._complete(messages, temperature=temperature, logprobs=False, max_tokens=max_tokens)

    def draft(self, messages: Sequence[dict]) -> Draft:
        """One answer with its score; never raises for the endpoint's failures (see ``Draft.error``)."""
        import openai

        problem = self.too_long(messages)
        if problem:
            return Draft(None, error=problem)
        try:
            choice = self._complete_with_logprobs(messages, temperature=self.config.temperature)
            text = choice.message.content or ""
            content = getattr(choice.logprobs, "content", None) if choice.logprobs is not None else None
            score = logprob_score([t.logprob for t in content]) if content else None
            if score is not None:
                return Draft(text, score, "logprobs", choice.finish_reason)
            if self.config.samples > 1 and self.embed is not None and text.strip():
                hot = max(self.config.temperature, 0.7)  # identical samples would say nothing
                others = [self._complete(messages, temperature=hot, logprobs=False).message.content or ""
                          for _ in range(self.config.samples - 1)]
                return Draft(text, consistency_score(self.embed([text, *others])), "self-consistency",
                             choice.finish_reason)
            return Draft(text, NEUTRAL_SCORE, "none", choice.finish_reason)
        except openai.APIError as exc:
            return Draft(None, error=_reason(exc, self.config))

    def judge(self, prompt: str, response: str) -> tuple[float, str]:
        """``(score in [0, 1], the judge's words)`` for one answer, from a 1-5 rubric; an answer the
        judge gives no digit for scores 1.0 (not flagged). Raises `LLMEndpointError`."""
        import openai

        messages = [{"role": "user", "content": JUDGE_PROMPT.format(prompt=prompt, response=response)}]
        try:
            text = self._complete(messages, temperature=0.0, logprobs=False).message.content or ""
        except openai.APIError as exc:
            raise LLMEndpointError(_reason(exc, self.config)) from None
        match = re.search(r"[1-5]", text)
        return ((int(match.group(0)) - 1) / 4.0 if match else 1.0), " ".join(text.split())[:200]

    def first_token(self, messages: Sequence[dict]) -> tuple[str, dict | None]:
        """A short reply at temperature 0 and its first token's top log-probabilities (None where
        the endpoint gives none). Raises `LLMEndpointError`."""
        import openai

        try:
            choice = self._complete_with_logprobs(messages, temperature=0.0, max_tokens=VERDICT_TOKENS, top_logprobs=20)
        except openai.APIError as exc:
            raise LLMEndpointError(_reason(exc, self.config)) from None
        content = getattr(choice.logprobs, "content", None) if choice.logprobs is not None else None
        top = {t.token: t.logprob for t in (content[0].top_logprobs or ())} if content else None
        return choice.message.content or "", top

    def compare(self, prompt: str, first: str, second: str):
        """`labelloop.model.responses.pairs.judge_pair` through this endpoint; never raises for the
        endpoint's failures (see ``Verdict.error``)."""
        from .pairs import Verdict, judge_pair, pair_messages

        problem = self.too_long(pair_messages(prompt, first, second), answer_tokens=VERDICT_TOKENS)
        if problem:
            return Verdict(error=problem)
        try:
            return judge_pair(self.first_token, prompt, first, second)
        except LLMEndpointError as exc:
            return Verdict(error=str(exc))

    def compare_many(self, pairs: Sequence[tuple[str, str, str]], *, progress: Callable[[int], None] | None = None):
        """`compare` for every ``(prompt, first, second)``, ``concurrency`` at a time, in input order."""
        from .pairs import Verdict

        return self._each(lambda pair: self.compare(*pair), pairs, progress, lambda error: Verdict(error=error))

    def _each(self, call: Callable, items: Sequence, progress: Callable[[int], None] | None, failed: Callable):
        """``call(item)`` for every item, ``concurrency`` at a time, in input order; an unexpected
        exception becomes ``failed(message)`` so that it cannot take the batch down with it."""
        def one(item):
            try:
                result = call(item)
            except Exception as exc:
                logger.exception("unexpected error while calling the LLM endpoint")
                result = failed(f"{type(exc).__name__}: {exc}")
            if progress is not None:
                progress(1)
            return result

        if not items:
            return []
        with ThreadPoolExecutor(max_workers=min(self.config.concurrency, len(items))) as pool:
            return list(pool.map(one, items))

    def draft_many(self, prompts: Sequence[Sequence[dict]], *, progress: Callable[[int], None] | None = None
                   ) -> list[Draft]:
        """`draft` for every prompt, ``concurrency`` at a time, in input order."""
        return self._each(self.draft, prompts, progress, lambda error: Draft(None, error=error))
