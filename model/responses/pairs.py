"""Which of two answers an LLM judge prefers, for prelabelling preference-pair projects.

The judge is asked twice, once with each answer first, and the two verdicts are averaged:
LLM judges favour a position (small models strongly), and a preference that flips with the order
says the judge does not know. ``P(first better)`` comes from the log-probabilities of the
judge's first token ("1" against "2") where the endpoint returns them, else from the digit it
writes (1 or 0). The confidence ``|2p - 1|`` is the prediction's score: lower asks a human first.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable, Mapping

# the question comes last: small models follow the instruction nearest the end
PAIR_PROMPT = ("REQUEST:\n{prompt}\n\nANSWER 1:\n{first}\n\nANSWER 2:\n{second}\n\nWhich answer to the "
               "request is better: more helpful, correct and clear? Reply with the single digit 1 or 2.")


@dataclass(frozen=True)
class Verdict:
    """``first_better``: P(the first answer of the pair is better), both orders averaged, in [0, 1];
    ``method``: "logprobs" or "digits" (or "mixed"); ``error`` is set when no verdict came back."""

    first_better: float = 0.5
    method: str = "none"
    error: str | None = None

    @property
    def confidence(self) -> float:
        return abs(2.0 * self.first_better - 1.0)


def pair_messages(prompt: str, first: str, second: str) -> list[dict]:
    return [{"role": "user", "content": PAIR_PROMPT.format(prompt=prompt, first=first, second=second)}]


def one_better(text: str, top_logprobs: Mapping[str, float] | None) -> tuple[float, str] | None:
    """``(P("1"), method)`` from one reply: the first token's top log-probabilities of "1" and "2"
    (renormalised over the two), else the first 1 or 2 the reply writes; None when it gives neither.
    A digit missing from the top tokens is given the lowest listed log-probability, an upper bound
    on its own, so that one listed digit does not read as certainty."""
    values = {t.strip(): lp for t, lp in (top_logprobs or {}).items() if lp is not None and math.isfinite(lp)}
    if "1" in values or "2" in values:
        floor = min(values.values())
        one, two = values.get("1", floor), values.get("2", floor)
        top = max(one, two)
        return math.exp(one - top) / (math.exp(one - top) + math.exp(two - top)), "logprobs"
    match = re.search(r"[12]", text or "")
    if match:
        return (1.0 if match.group() == "1" else 0.0), "digits"
    return None


def judge_pair(ask: Callable[[list[dict]], tuple[str, Mapping[str, float] | None]], prompt: str, first: str,
               second: str) -> Verdict:
    """The position-debiased `Verdict` on ``(first, second)``. ``ask(messages) -> (reply text, the
    first token's top log-probabilities or None)`` calls the judge; its exceptions propagate."""
    forward = one_better(*ask(pair_messages(prompt, first, second)))
    backward = one_better(*ask(pair_messages(prompt, second, first)))
    if forward is None or backward is None:
        return Verdict(error="the judge answered with neither 1 nor 2")
    method = forward[1] if forward[1] == backward[1] else "mixed"
    return Verdict((forward[0] + 1.0 - backward[0]) / 2.0, method)
