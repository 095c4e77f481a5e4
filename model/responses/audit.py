"""Checks of human-written responses before they become fine-tuning data.

Pure functions over lists of prompts and responses; `audit_responses` runs them all and returns
one finding per flagged task, worst first, in the shape classification's audit uses
(``task_id``, ``given``, ``suggested``, ``quality``, ``issues``, ``reason``). ``quality`` is in
[0, 1], lower is worse: the worst issue of a task sets it (see ``SEVERITY``).
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from labelloop.model.text_cleaning import dedup_key

#: quality of a task whose worst issue is this one
SEVERITY = {"empty_response": 0.0, "secret_or_pii": 0.05, "refusal": 0.1, "truncated": 0.2,
            "conflicting_duplicate": 0.3, "language_mismatch": 0.3, "length_outlier": 0.5, "judge_low": 0.4,
            "annotators_disagree": 0.25, "conflicting_pair": 0.3}

_REFUSAL = re.compile(
    r"\bas an? (?:ai|artificial intelligence)(?: language model| assistant| model)?\b"
    r"|\bas a (?:large )?language model\b"
    r"|\bi(?:'m| am) (?:sorry|afraid),? but i (?:can(?:not|'t)|am unable|won't)\b"
    r"|\bi (?:can(?:not|'t)|am unable to|won't) (?:help|assist|provide|comply|fulfil+)\b"
    r"|\bi don't have (?:personal (?:opinions|feelings|experiences)|the ability)\b", re.I)

_SECRETS = (
    ("e-mail address", re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")),
    ("API key", re.compile(r"\b(?:sk-(?:proj-)?[A-Za-z0-9_-]{20,}|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{36,}"
                           r"|xox[abprs]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35})")),
    ("private key", re.compile(r"-----BEGIN (?:[A-Z]+ )*PRIVATE KEY-----")),
    # OPENAI_API_KEY=..., password: ..., "secret": "..."
    ("credential", re.compile(r"(?i)(?<![a-z])(?:api[_-]?key|secret|password|passwd|access[_-]?token)['\"]?\s*[:=]"
                              r"\s*['\"]?[^\s'\"]{8,}")),
)
# a run of digits with the separators phone numbers use; kept only with 9 to 15 digits
_PHONE = re.compile(r"(?<![\w.])\+?\(?\d[\d\s().-]{7,20}\d(?![\w.])")
# words a finished sentence does not end on
_DANGLING = {"a", "an", "the", "and", "or", "but", "to", "of", "with", "for", "in", "on", "at", "by", "from",
             "is", "are", "was", "were", "that", "which", "because", "so", "if", "as", "than", "then", "my",
             "your", "their", "this"}


def empty_response(response: str) -> str | None:
    """Why ``response`` is empty, or None."""
    if not response or not response.strip():
        return "the response is empty or only whitespace"
    return None


def truncation(response: str, *, long_chars: int = 200) -> str | None:
    """Why ``response`` looks cut off, or None: an unclosed code fence, a dangling last word or
    punctuation mark, or a long answer that stops without ending its sentence."""
    text = response.strip()
    if not text:
        return None
    if text.count("```") % 2:
        return "unbalanced code fence (```)"
    last_word = re.findall(r"[A-Za-z']+", text[-40:])
    if text[-1] in ",;:-–(/&" or (last_word and last_word[-1].lower() in _DANGLING and text[-1].isalpha()):
        return "it stops mid-sentence"
    if len(text) >= long_chars and text[-1].isalnum() and not text.endswith("```"):
        return "a long answer that stops without ending its sentence"
    return None


def refusal(response: str) -> str | None:
    """The refusal or boilerplate phrase in ``response``, or None."""
    match = _REFUSAL.search(response or "")
    return f"refusal or boilerplate: \"{match.group(0)}\"" if match else None


def secrets(response: str) -> list[str]:
    """Kinds of secrets and personal data in ``response``: e-mail addresses, phone numbers, API keys..."""
    found = [name for name, pattern in _SECRETS if pattern.search(response or "")]
    for match in _PHONE.finditer(response or ""):
        if 9 <= sum(ch.isdigit() for ch in match.group(0)) <= 15:
            found.append("phone number")
            break
    return found


@functools.lru_cache(maxsize=1)
def _language_identifier():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def language(text: str, *, min_words: int = 4, min_confidence: float = 0.5) -> str | None:
    """The language code of ``text`` (py3langid), or None when it is too short or unsure."""
    if len(re.findall(r"[^\W\d_]{2,}", text or "")) < min_words:
        return None
    code, confidence = _language_identifier().classify(text)
    return code if confidence >= min_confidence else None


def language_share(text: str, code: str) -> float:
    """py3langid's probability that ``text`` is in ``code``. A mismatch needs it near 0: short
    English can read as a close variety ("As soon as i get enough money for my robot body." is
    0.56 Nigerian Pidgin, 0.44 English), which is no reason to review an answer."""
    return float(dict(_language_identifier().rank(text)).get(code, 0.0))


def length_outliers(prompt_embeddings: np.ndarray, response_lengths: Sequence[int], *, z: float = 3.5,
                    min_ratio: float = 4.0, min_group: int = 8, min_samples: int = 30,
                    random_state: int = 0) -> np.ndarray:
    """Boolean mask ``(n,)``: responses whose log-length is far from that of similar prompts.

    Prompts are grouped by k-means over ``prompt_embeddings`` ``(n, d)`` (about 20 per group)
    into "prompt types"; within a type, a robust z-score (median and MAD) over ``z`` and a
    length at least ``min_ratio`` times off the median flag an outlier. Types smaller than
    ``min_group`` use the whole project; under ``min_samples`` answers nothing is flagged
    (a handful of lengths says little about what is usual).
    """
    from sklearn.cluster import KMeans

    lengths = np.log1p(np.asarray(response_lengths, dtype=float))
    n = len(lengths)
    flags = np.zeros(n, dtype=bool)
    if n < max(min_samples, min_group):
        return flags
    k = int(min(10, max(1, n // 20)))
    groups = KMeans(n_clusters=k, n_init=3, random_state=random_state).fit_predict(prompt_embeddings) \
        if k > 1 else np.zeros(n, dtype=int)

    def outlying(values):
        median = np.median(values)
        mad = np.median(np.abs(values - median)) * 1.4826
        # a floor: equal lengths are not all outliers
        return (np.abs(values - median) / max(mad, 0.25) > z) & (np.abs(values - median) > np.log(min_ratio))

    overall = outlying(lengths)
    for g in np.unique(groups):
        members = np.flatnonzero(groups == g)
        flags[members] = outlying(lengths[members]) if len(members) >= min_group else overall[members]
    return flags


def conflicting_duplicates(prompts: Sequence[str], responses: Sequence[str], prompt_embeddings: np.ndarray,
                           response_embeddings: np.ndarray, *, prompt_threshold: float = 0.95,
                           response_threshold: float = 0.8) -> list[tuple[int, int]]:
    """Pairs ``(i, j)``, ``i < j``: the same or nearly the same prompt (equal `dedup_key`, or
    cosine >= ``prompt_threshold``) answered by responses that differ (different `dedup_key` and
    cosine < ``response_threshold``)."""
    from labelloop.model.data_issues import knn_graph, near_duplicate_pairs, same_key_pairs

    keys = [dedup_key(p) for p in prompts]
    candidates = {tuple(p) for p in same_key_pairs(keys)}
    if len(prompts) > 1:
        graph = knn_graph(prompt_embeddings, n_neighbors=min(10, len(prompts) - 1))
        candidates |= {tuple(sorted(map(int, p))) for p in near_duplicate_pairs(graph, threshold=prompt_threshold)}
    R = np.asarray(response_embeddings, dtype=float)
    R = R / np.maximum(np.linalg.norm(R, axis=1, keepdims=True), 1e-12)
    conflicts = []
    for i, j in sorted(candidates):
        if dedup_key(responses[i]) != dedup_key(responses[j]) and float(R[i] @ R[j]) < response_threshold:
            conflicts.append((int(i), int(j)))
    return conflicts


@dataclass
class ResponseAudit:
    """What `audit_responses` found. ``findings`` worst first; ``task_ids``, ``response_chars``
    and ``languages`` ``(n,)`` cover every audited task."""

    findings: list[dict]
    task_ids: list
    response_chars: np.ndarray
    issue_counts: dict
    messages: list[str] = field(default_factory=list)


def pair_issues(prompts: Sequence[str], picks: Sequence[tuple], task_ids: Sequence) -> list[dict[str, str]]:
    """Preference-pair checks over ``n`` decided pairs; one ``{issue: reason}`` per pair.

    ``picks``: per pair, ``(chosen answer, rejected answer, annotators' picks)`` where the picks are
    the choice each annotator made (their latest annotation). Flags ``annotators_disagree`` when
    those differ, and ``conflicting_pair`` when the same prompt with the same two answers (in
    either order) was decided the other way in another task.
    """
    issues: list[dict[str, str]] = [{} for _ in prompts]
    decided: dict = {}
    for i, (prompt, (chosen, rejected, votes)) in enumerate(zip(prompts, picks)):
        if len(set(votes)) > 1:
            issues[i]["annotators_disagree"] = f"{len(votes)} annotators: " + ", ".join(sorted(map(str, votes)))
        key = (dedup_key(prompt), frozenset((dedup_key(chosen), dedup_key(rejected))))
        decided.setdefault(key, []).append((i, dedup_key(chosen)))
    for group in decided.values():
        for i, pick in group:
            other = next((j for j, p in group if p != pick), None)
            if other is not None:
                issues[i]["conflicting_pair"] = f"task {task_ids[other]} has the same pair and chose the other answer"
    return issues


def audit_responses(task_ids: Sequence, prompts: Sequence[str], responses: Sequence[str], *,
                    embed: Callable[[list[str]], np.ndarray],
                    judge: Callable[[str, str], tuple[float, str]] | None = None,
                    extra_issues: Sequence[dict[str, str]] | None = None,
                    conflicts: bool = True) -> ResponseAudit:
    """Run every check over ``n`` answered tasks.

    ``embed(texts) -> (n, d)``; ``judge(prompt, response) -> (score in [0, 1], reason)``, if
    given, flags answers it scores under 0.5 (a rubric from an LLM acting as judge).
    ``extra_issues``: ``(n,)`` more ``{issue: reason}`` from the caller (`pair_issues`);
    ``conflicts``: whether the same prompt answered differently is an issue (not for preference
    pairs, where one prompt has many pairs).
    """
    n = len(task_ids)
    if not (len(prompts) == len(responses) == n):
        raise ValueError("task_ids, prompts and responses must have the same length")
    issues: list[dict[str, str]] = [dict(extra) for extra in extra_issues] if extra_issues else [{} for _ in range(n)]
    for i, (prompt, response) in enumerate(zip(prompts, responses)):
        for name, reason in (("empty_response", empty_response(response)), ("truncated", truncation(response)),
                             ("refusal", refusal(response))):
            if reason:
                issues[i][name] = reason
        found = secrets(response)
        if found:
            issues[i]["secret_or_pii"] = "contains " + ", ".join(dict.fromkeys(found))
        asked, answered = language(prompt), language(response)
        if asked and answered and asked != answered and language_share(response, asked) < 0.05:
            issues[i]["language_mismatch"] = f"the prompt is in {asked!r}, the response in {answered!r}"
    P = np.asarray(embed(list(prompts)), dtype=np.float32)
    R = np.asarray(embed([r if r.strip() else "(empty)" for r in responses]), dtype=np.float32)
    chars = np.array([len(r.strip()) for r in responses])
    for i in np.flatnonzero(length_outliers(P, chars)):
        issues[i]["length_outlier"] = f"{chars[i]} characters: unusual for prompts like this one"
    for i, j in conflicting_duplicates(prompts, responses, P, R) if conflicts else ():
        for a, b in ((i, j), (j, i)):
            issues[a]["conflicting_duplicate"] = f"the same prompt as task {task_ids[b]} has a different answer"
    messages = []
    if judge is not None:
        for i, (prompt, response) in enumerate(zip(prompts, responses)):
            if "empty_response" in issues[i]:
                continue
            score, reason = judge(prompt, response)
            if score < 0.5:
                issues[i]["judge_low"] = f"judge score {score:.2f}: {reason}"
    else:
        messages.append("no judge: set LABELLOOP_LLM_MODEL and pass --judge to score answers with a rubric")
    findings = [{"task_id": int(task_ids[i]) if str(task_ids[i]).isdigit() else task_ids[i],
                 "given": responses[i][:200], "suggested": None,
                 "quality": min(SEVERITY[name] for name in found), "agreement": None, "n_annotators": None,
                 "issues": sorted(found), "reason": "; ".join(found[name] for name in sorted(found))}
                for i, found in enumerate(issues) if found]
    findings.sort(key=lambda f: (f["quality"], str(f["task_id"])))
    counts: dict = {}
    for found in issues:
        for name in found:
            counts[name] = counts.get(name, 0) + 1
    return ResponseAudit(findings, list(task_ids), chars, counts, messages)
