"""Preference pairs (Choices naming two answer Texts): prelabelled by an LLM judge, exported as
chosen/rejected pairs.

The judge is the OpenAI-compatible endpoint that drafts LLM responses (``LABELLOOP_LLM_*``). It
reads the prompt and both answers, in both orders (`labelloop.model.responses.pairs`); the
prelabel picks the answer it prefers, and the score is how sure it is, so that Label Studio's
uncertainty stream serves the pairs it cannot call first. Verdicts are kept on disk per model
version, as drafts are. Nothing is trained from annotations.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from labelloop.label_config.regions import choices_result, chosen_labels, latest_by_annotator
from labelloop.label_config.spec import PreferenceSpec, UnsupportedLabelConfig
from labelloop.model.export.formats import Example
from labelloop.model.responses.draft_store import DraftStore
from labelloop.model.responses.llm import Draft, Drafter
from labelloop.model.responses.pairs import PAIR_PROMPT
from labelloop.model.store import VERSION_PREFIX

from .base import ProjectKind, finished_annotation, task_text
from .responses import ResponseKind, model_slug

logger = logging.getLogger(__name__)

_RESPONSES = ResponseKind()  # the endpoint and its cached check are the LLM responses kind's


@dataclass(frozen=True)
class PairInput:
    """What the judge reads of one task: the prompt, the two answers in the config's order, and
    the store ``key`` of the three."""

    task_id: object
    text: str
    answers: tuple[str, str]
    key: str


class PairJudge:
    """What serves one preference project for one request or refresh run (``drafted`` and
    ``progress`` as in `labelloop.kinds.responses.ProjectDrafter`)."""

    def __init__(self, drafter: Drafter, store: DraftStore, *, progress=None):
        self.drafter = drafter
        self.store = store
        self.progress = progress
        self.drafted = 0


class PreferenceKind(ProjectKind):
    name = "preference"
    title = "preference pair"
    spec_type = PreferenceSpec
    prelabels = True

    # --- settings --------------------------------------------------------------------------------
    def configure(self, registry, project: str, spec: PreferenceSpec, extra_params: dict) -> None:
        """Two answers, and an endpoint that answers: `UnsupportedLabelConfig` or `LLMEndpointError`."""
        if len(spec.answers) != 2:
            raise UnsupportedLabelConfig(
                f"the judge compares two answers; <Choices name=\"{spec.from_name}\"> names {len(spec.answers)}")
        _RESPONSES.check_endpoint(registry.llm)

    # --- prelabel --------------------------------------------------------------------------------
    def model_version(self, registry, project: str, spec: PreferenceSpec) -> str:
        digest = hashlib.sha1(json.dumps([registry.llm.model, PAIR_PROMPT]).encode()).hexdigest()[:8]
        return f"{VERSION_PREFIX}judge-{model_slug(registry.llm.model or 'none')}-{digest}"

    def serving_model(self, registry, project: str, spec: PreferenceSpec):
        version = self.model_version(registry, project, spec)
        # not the drafts' cache entry: theirs carries an encoder for self-consistency
        drafter = registry.cached(("judge", registry.llm), lambda: Drafter(registry.llm))
        store = registry.cached(("verdicts", project, version), lambda: DraftStore(
            registry.store.project_dir(project) / "verdicts" / f"{version}.jsonl"))
        return PairJudge(drafter, store), version

    def task_input(self, task, spec: PreferenceSpec, model: PairJudge, *, max_chars: int):
        """The prompt and both answers; a missing or empty one, or two equal answers, is a reason."""
        prompt, problem = task_text(task, spec.prompt_key, max_chars=max_chars)
        if prompt is None:
            return None, problem
        answers = []
        for _, key in spec.answers:
            answer, problem = task_text(task, key, max_chars=max_chars)
            if answer is None:
                return None, problem
            answers.append(answer)
        if answers[0].strip() == answers[1].strip():
            return None, "the two answers are the same"
        return PairInput(task.get("id"), prompt, (answers[0], answers[1]), self._key(task["data"], spec)), None

    @staticmethod
    def _pick(annotation: dict | None, spec: PreferenceSpec) -> str | None:
        """The answer an annotation or prediction picks (its choice alias), or None."""
        picked = [c for c in chosen_labels((annotation or {}).get("result"), spec) if c in dict(spec.answers)]
        return picked[0] if picked else None

    @staticmethod
    def _key(data: dict, spec: PreferenceSpec) -> str:
        """The store key of a pair: its texts as the task holds them (whatever a request cuts)."""
        texts = [data.get(spec.prompt_key), *(data.get(key) for _, key in spec.answers)]
        return hashlib.sha1(json.dumps(texts, ensure_ascii=False).encode("utf-8", "surrogatepass")).hexdigest()[:20]

    def predict(self, inputs: Sequence[PairInput], spec: PreferenceSpec, model: PairJudge, *, strategy: str,
                limit: int | None = None):
        """Stored verdicts where they exist, new ones for the rest (at most ``limit`` per `PairJudge`).
        A value is the choice of the preferred answer ("" for a tie), or None (no verdict: not asked
        yet, or the endpoint failed, which is logged); the score is the judge's confidence."""
        stored = [model.store.get(x.key) for x in inputs]
        todo = [i for i, v in enumerate(stored) if v is None]
        if limit is not None:
            todo = todo[:max(0, limit - model.drafted)]
        verdicts = model.drafter.compare_many([(inputs[i].text, *inputs[i].answers) for i in todo],
                                              progress=model.progress) if todo else []
        model.drafted += len(todo)
        choices = [choice for choice, _ in spec.answers]
        for i, verdict in zip(todo, verdicts):
            if verdict.error:
                logger.warning("task %s gets no verdict: %s", inputs[i].task_id, verdict.error)
                continue
            # a tie (say, "1" in both orders) picks nothing: a preselected answer would be a coin's
            better = "" if verdict.first_better == 0.5 else choices[0] if verdict.first_better > 0.5 else choices[1]
            stored[i] = Draft(better, verdict.confidence, verdict.method)
            model.store.put(inputs[i].key, stored[i], task_id=inputs[i].task_id)
        values = [v.text if v is not None else None for v in stored]
        return values, np.array([v.score if v is not None else 1.0 for v in stored], dtype=float)

    def adopt(self, task: dict, prediction: dict, spec: PreferenceSpec, model: PairJudge) -> bool:
        """A verdict of this version that Label Studio holds (imported by `labelloop prelabel` on
        another machine, say) goes into this backend's store, so the pair is not judged again."""
        picked = self._pick(prediction, spec)
        data = task.get("data")
        if picked is None or not isinstance(data, dict) or model.store.get(key := self._key(data, spec)) is not None:
            return False
        score = prediction.get("score")
        model.store.put(key, Draft(picked, float(score) if isinstance(score, (int, float)) else 0.0, "imported"),
                        task_id=task.get("id"))
        return True

    def regions(self, spec: PreferenceSpec, value) -> list[dict]:
        return [choices_result(spec, [value])] if value else []

    # --- audit -----------------------------------------------------------------------------------
    def audit(self, tasks: dict, spec: PreferenceSpec, *, embed, n_folds: int = 5, progress=None, judge=None):
        """The chosen answer of each decided pair, checked as a written LLM answer is (empty,
        truncated, refusal, secrets, another language, length, the judge's rubric), plus pairs
        whose annotators picked differently and pairs decided the other way in another task
        (`labelloop.model.responses.audit.pair_issues`)."""
        from labelloop.model.errors import NotEnoughLabelsError
        from labelloop.model.responses.audit import audit_responses, pair_issues

        answers = dict(spec.answers)

        def text(data, key) -> str:
            return data[key] if isinstance(data.get(key), str) else ""

        ids, prompts, chosen, picks = [], [], [], []
        for task in tasks.values():
            choice = self._pick(finished_annotation(task), spec)
            if choice is None:
                continue
            votes = [v for latest in latest_by_annotator(task.get("annotations")).values()
                     if (v := self._pick(latest, spec)) is not None]
            data = task.get("data") or {}
            other = next(key for c, key in spec.answers if c != choice)
            ids.append(task["id"])
            prompts.append(text(data, spec.prompt_key))
            chosen.append(text(data, answers[choice]))
            picks.append((chosen[-1], text(data, other), votes))
        if not ids:
            raise NotEnoughLabelsError("the project has no decided pairs to audit")
        if progress:
            progress("checking the chosen answers", None)
        return audit_responses(ids, prompts, chosen, embed=embed, judge=judge, conflicts=False,
                               extra_issues=pair_issues(prompts, picks, ids))

    def example(self, task: dict, spec: PreferenceSpec, *, audit_label=None):
        """The picked answer becomes the chosen response, the other one the rejected response."""
        annotation = finished_annotation(task)
        if annotation is None:
            return None, None
        data = task.get("data") or {}
        picked = self._pick(annotation, spec)
        if picked is None:
            return None, "no preferred answer chosen"
        other = next(key for choice, key in spec.answers if choice != picked)
        chosen, rejected = data.get(dict(spec.answers)[picked]), data.get(other)
        if not isinstance(chosen, str):
            return None, "empty response"
        if not isinstance(rejected, str):
            return None, "rejected response empty or the same as the chosen one"
        return Example(task["id"], data.get(spec.prompt_key), response=chosen, rejected=rejected), None
