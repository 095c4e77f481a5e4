"""LLM responses (Supervised LLM Fine-tuning: a TextArea answering a Text prompt).

Drafts come from an OpenAI-compatible endpoint (`labelloop.model.responses.llm`), are kept in a
`DraftStore` per project and model version, and are scored by the model's own uncertainty. A
<Choices> over the same text in the config is prelabelled too (zero-shot, as in classification).
Nothing is trained from annotations: the endpoint's model is what it is.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from labelloop.label_config.regions import choices_result, textarea_result, textarea_text
from labelloop.label_config.spec import ResponseSpec
from labelloop.model.export.formats import Example
from labelloop.model.responses.draft_store import DraftStore
from labelloop.model.responses.llm import Draft, Drafter, LLMConfig, LLMEndpointError
from labelloop.model.responses.prompts import PromptTemplate, TemplateError, messages_digest
from labelloop.model.store import VERSION_PREFIX
from labelloop.model.text_cleaning import clean_text

from .base import ProjectKind, ProjectSettingsError, finished_annotation
from .classification import ClassificationKind

logger = logging.getLogger(__name__)

_CLASSIFICATION = ClassificationKind()
_CHECK_TTL_S = {True: 60.0, False: 10.0}  # /setup comes before every prediction batch


@dataclass(frozen=True)
class PromptInput:
    """What the model reads of one task: the rendered chat ``messages``, the user message as
    ``text`` (for embeddings and clusters), and the store ``key`` of those messages."""

    task_id: object
    text: str
    messages: tuple
    key: str


class ProjectDrafter:
    """What serves one LLM project for one request or refresh run.

    ``drafted`` counts new drafts made through it, so a ``limit`` holds across batches;
    ``progress(n)``, if set, is called as drafts complete.
    """

    def __init__(self, drafter: Drafter, template: PromptTemplate, store: DraftStore, *, model_name: str,
                 classifier=None, progress=None):
        self.drafter = drafter
        self.template = template
        self.store = store
        self.model_name = model_name  # the encoder behind clusters and self-consistency
        self.classifier = classifier
        self.progress = progress
        self.drafted = 0


def model_slug(name: str) -> str:
    """A model name as a model version can hold it: its last path part, safe characters only."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name.rstrip("/").split("/")[-1]).strip("-.")[:60] or "model"


class ResponseKind(ProjectKind):
    name = "llm"
    title = "LLM response (Supervised LLM Fine-tuning)"
    spec_type = ResponseSpec
    prelabels = True
    trains = False

    def __init__(self):
        self._checks: dict[tuple, tuple[float, str | None]] = {}
        self._checks_lock = threading.Lock()

    # --- settings --------------------------------------------------------------------------------
    @staticmethod
    def project_config(registry, project: str) -> LLMConfig:
        """The endpoint settings with the project's extra params (kept at /setup) applied."""
        return registry.llm.with_params(registry.store.read_settings(project).get("llm"))

    @staticmethod
    def template(config: LLMConfig, spec: ResponseSpec) -> PromptTemplate:
        """The configured template, else the prompt field as it is."""
        return PromptTemplate(config.prompt_template or "{%s}" % spec.prompt_key, config.system_prompt)

    def version(self, config: LLMConfig, spec: ResponseSpec, model_name: str) -> str:
        """Names the model and hashes what changes a draft: the model's full name, template, system
        prompt, sampling."""
        parts = [config.model, self.template(config, spec).digest, config.temperature, config.max_tokens,
                 config.samples]
        if spec.choices is not None:
            parts.append(_CLASSIFICATION.prior_version(spec.choices, model_name))
        digest = hashlib.sha1(json.dumps(parts).encode()).hexdigest()[:8]
        return f"{VERSION_PREFIX}llm-{model_slug(config.model or 'none')}-{digest}"

    def configure(self, registry, project: str, spec: ResponseSpec, extra_params: dict) -> None:
        """Validate the project's overrides, the template's fields and the endpoint; keep the overrides.

        Raises `ProjectSettingsError`, `TemplateError` (naming the field) or `LLMEndpointError`.
        """
        params = {k: v for k, v in extra_params.items() if k in LLMConfig.PROJECT_PARAMS}
        try:
            config = registry.llm.with_params(params)
        except ValueError as exc:
            raise ProjectSettingsError(str(exc)) from None
        template = self.template(config, spec)
        missing = template.missing_fields(spec.data_keys)
        if missing:
            raise TemplateError(f"the prompt template uses field {missing[0]!r}, which the label config does not "
                                f"show; its task data fields are: {', '.join(spec.data_keys) or 'none'}")
        self.check_endpoint(config)
        current = registry.store.read_settings(project)
        if current.get("llm", {}) != params:
            registry.store.write_settings(project, {**current, "llm": params})

    def check_endpoint(self, config: LLMConfig) -> None:
        """`Drafter.check`, remembered for a minute (10 s after a failure)."""
        key = (config.base_url, config.model, hashlib.sha1((config.api_key or "").encode()).hexdigest())
        with self._checks_lock:
            until, error = self._checks.get(key, (0.0, None))
        if time.monotonic() >= until:
            try:
                Drafter(config).check()
                error = None
            except LLMEndpointError as exc:
                error = str(exc)
                logger.error("LLM endpoint check failed: %s", error)
            with self._checks_lock:
                self._checks[key] = (time.monotonic() + _CHECK_TTL_S[error is None], error)
        if error:
            raise LLMEndpointError(error)

    # --- prelabel --------------------------------------------------------------------------------
    def model_version(self, registry, project: str, spec: ResponseSpec) -> str:
        return self.version(self.project_config(registry, project), spec, registry.model_name)

    def serving_model(self, registry, project: str, spec: ResponseSpec):
        from labelloop.model.embeddings import get_embedder

        config = self.project_config(registry, project)
        version = self.version(config, spec, registry.model_name)
        drafter = registry.cached(("llm", config), lambda: Drafter(
            config, embed=lambda texts: get_embedder(registry.model_name).embed(texts)))
        store = registry.cached(("drafts", project, version), lambda: DraftStore(
            registry.store.project_dir(project) / "drafts" / f"{version}.jsonl"))
        classifier = None
        if spec.choices is not None:
            classifier, _ = _CLASSIFICATION.serving_model(registry, project, spec.choices)
        return ProjectDrafter(drafter, self.template(config, spec), store, model_name=registry.model_name,
                              classifier=classifier), version

    def task_input(self, task, spec: ResponseSpec, model: ProjectDrafter, *, max_chars: int):
        """The rendered prompt; an empty prompt, a missing field or one over the context is a reason."""
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            return None, "task has no data object"
        try:
            messages = model.template.messages(task["data"])
        except TemplateError as exc:
            return None, str(exc)
        messages = tuple({**m, "content": clean_text(m["content"])} for m in messages)
        problem = model.drafter.too_long(messages)
        if problem:
            return None, problem
        return PromptInput(task.get("id"), messages[-1]["content"], messages, messages_digest(list(messages))), None

    def predict(self, inputs: Sequence[PromptInput], spec: ResponseSpec, model: ProjectDrafter, *, strategy: str,
                limit: int | None = None):
        """Stored drafts where they exist; new ones for the rest, at most ``limit`` per `ProjectDrafter`.

        A value is ``(draft text, chosen labels or None)``, or None (no draft: not made yet, or the
        endpoint failed, which is logged). The score is the draft's; with a <Choices> as well, the
        lower of the draft's and the classifier's.
        """
        drafts = [model.store.get(x.key) for x in inputs]
        todo = [i for i, d in enumerate(drafts) if d is None]
        if limit is not None:
            todo = todo[:max(0, limit - model.drafted)]
        made = model.drafter.draft_many([inputs[i].messages for i in todo], progress=model.progress)
        model.drafted += len(todo)
        for i, draft in zip(todo, made):
            if draft.error:
                logger.warning("task %s gets no draft: %s", inputs[i].task_id, draft.error)
                continue
            model.store.put(inputs[i].key, draft, task_id=inputs[i].task_id)
            drafts[i] = draft
        scores = np.array([d.score if d is not None else 1.0 for d in drafts], dtype=float)
        labels: list = [None] * len(inputs)
        if model.classifier is not None and inputs:
            labels, choice_scores = _CLASSIFICATION.predict([x.text for x in inputs], spec.choices, model.classifier,
                                                            strategy=strategy)
            scores = np.minimum(scores, choice_scores)
        values = [(d.text, labels[i]) if d is not None else None for i, d in enumerate(drafts)]
        return values, scores

    def adopt(self, task: dict, prediction: dict, spec: ResponseSpec, model: ProjectDrafter) -> bool:
        """A draft of this version that Label Studio holds (imported by `labelloop prelabel` on
        another machine, say) goes into this backend's draft store, so it is not drafted again."""
        text = textarea_text(prediction.get("result"), spec)
        prompt, _ = self.task_input(task, spec, model, max_chars=0)
        if not text or prompt is None or model.store.get(prompt.key) is not None:
            return False
        score = prediction.get("score")
        model.store.put(prompt.key, Draft(text, float(score) if isinstance(score, (int, float)) else 0.5, "imported"),
                        task_id=task.get("id"))
        return True

    def regions(self, spec: ResponseSpec, value) -> list[dict]:
        text, labels = value
        regions = [textarea_result(spec, text)]
        if labels:
            regions.append(choices_result(spec.choices, labels))
        return regions

    # --- audit -----------------------------------------------------------------------------------
    def audit(self, tasks: dict, spec: ResponseSpec, *, embed, n_folds: int = 5, progress=None, judge=None):
        """`labelloop.model.responses.audit.audit_responses` over the answered tasks (``judge``: an
        LLM rubric, optional)."""
        from labelloop.model.errors import NotEnoughLabelsError
        from labelloop.model.responses.audit import audit_responses

        rows = []
        for task in tasks.values():
            annotation = finished_annotation(task)
            if annotation is None:
                continue
            response = textarea_text(annotation.get("result"), spec)
            prompt = (task.get("data") or {}).get(spec.prompt_key)
            rows.append((task["id"], prompt if isinstance(prompt, str) else "", response or ""))
        if not rows:
            raise NotEnoughLabelsError("the project has no finished annotations to audit")
        if progress:
            progress("checking responses", None)
        return audit_responses([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], embed=embed,
                               judge=judge)

    # --- export ----------------------------------------------------------------------------------
    def example(self, task: dict, spec: ResponseSpec, *, audit_label=None):
        """The prompt from the task data, the response from the latest finished annotation."""
        annotation = finished_annotation(task)
        if annotation is None:
            return None, None
        response = textarea_text(annotation.get("result"), spec)
        if response is None:
            return None, "empty response"
        return Example(task["id"], (task.get("data") or {}).get(spec.prompt_key), response=response), None
