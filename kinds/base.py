"""The contract every project kind fulfils, and what it raises when it cannot.

A project kind (text classification, NER spans, LLM responses, preference pairs) answers the
same few questions for every part of labelloop, which looks it up once (`labelloop.kinds.kind_for`):

- the backend: what a project's ML backend settings mean (`configure`, at /setup), which model
  serves a project (`model_version`, `serving_model`), what a task gives the model
  (`task_input`), what it predicts for a batch (`predict`) and the Label Studio regions of
  that (`regions`);
- training: what a labelled task teaches (`training_item`) and how a model is fitted (`fit`);
- the audit: which tasks look wrong (`audit`);
- the export: the examples a project's tasks become (`examples`) and how they are rendered
  (`render_options`, `keep_offsets`).

A kind that cannot do something yet raises `KindNotSupported`, whose message names the kind.
"""
from __future__ import annotations

import json
from typing import Any, Sequence

import numpy as np

from labelloop.label_config.regions import latest_annotation
from labelloop.label_config.spec import UnsupportedLabelConfig
from labelloop.model.errors import LabelloopError
from labelloop.model.export.examples import examples_from_tasks
from labelloop.model.export.formats import Example, RenderOptions
from labelloop.model.text_cleaning import clean_text


class KindNotSupported(UnsupportedLabelConfig):
    """labelloop recognises the project's kind but cannot do this with it (yet)."""


class ProjectSettingsError(LabelloopError, ValueError):
    """A project's extra params cannot be used (a value of the wrong type or range)."""


_EXAMPLE_PARAMS = '{"strategy": "margin"}'


def extra_params_dict(extra_params) -> dict:
    """The ML backend's extra params (a project's settings) as a dict; ``{}`` when there are none.

    Label Studio keeps what its Connect Model dialog's text box holds as a JSON string, and what
    the API set as an object; /setup and the SDK pass either on. Raises `ProjectSettingsError`
    for text that is not JSON, or JSON that is not an object.
    """
    value = extra_params
    if isinstance(value, str):
        if not value.strip():
            return {}
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ProjectSettingsError(f"the ML backend's extra params are not JSON ({exc.msg}, line {exc.lineno} "
                                       f"column {exc.colno}); write an object such as {_EXAMPLE_PARAMS}") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ProjectSettingsError(f"the ML backend's extra params must be a JSON object such as {_EXAMPLE_PARAMS}, "
                                   f"not {type(value).__name__}")
    return value


class ProjectKind:
    """One project kind. Subclasses set the class attributes and override what they support."""

    #: the name the export's formats and manifest use
    name: str = ""
    #: what a user calls it, for messages
    title: str = ""
    #: the `labelloop.label_config.spec` class it handles
    spec_type: type = type(None)
    #: NER texts stay exactly as they are: span offsets point into them
    keep_offsets: bool = False
    #: whether the backend can prelabel this kind
    prelabels: bool = False
    #: whether annotations train a project model (LLM drafts come from an outside endpoint)
    trains: bool = False

    def _unsupported(self, what: str, hint: str = "") -> KindNotSupported:
        return KindNotSupported(f"labelloop does not {what} for {self.title} projects yet" + (f"; {hint}" if hint else ""))

    def prelabel_unsupported(self) -> KindNotSupported:
        return self._unsupported("prelabel", "it prelabels text classification (a <Choices> control over a <Text> "
                                             "object), NER (a <Labels> over a <Text>), LLM responses (a "
                                             "<TextArea> answering a <Text>) and preference pairs (a <Choices> "
                                             "naming two answer <Text>s)")

    # --- prelabel (backend) -------------------------------------------------------------------
    def configure(self, registry, project: str, spec, extra_params: dict) -> None:
        """Check and keep a project's settings from /setup (the ML backend's extra params, read
        by `extra_params_dict`); raise a `labelloop.model.errors.LabelloopError` that says what
        is wrong."""

    def task_input(self, task: dict, spec, model, *, max_chars: int):
        """``(input, None)``: what the model reads of ``task``, or ``(None, reason)``. The default
        is the text of ``spec.text_key`` (`task_text`)."""
        return task_text(task, spec.text_key, max_chars=max_chars)

    def model_version(self, registry, project: str, spec) -> str:
        """The version that would serve ``project`` now; cheap, loads nothing."""
        raise self.prelabel_unsupported()

    def serving_model(self, registry, project: str, spec):
        """``(model, model_version)`` that serves ``project``, loaded at most once per process."""
        raise self.prelabel_unsupported()

    def predict(self, inputs: Sequence, spec, model, *, strategy: str, limit: int | None = None
                ) -> tuple[list, np.ndarray]:
        """``(values, scores)`` for ``inputs`` (from `task_input`): one value (what the model
        proposes, or None for no prediction now) and one score ``(n_inputs,)`` per input, lower
        meaning "ask a human first". ``limit``: at most this many slow calls (LLM drafts)."""
        raise self.prelabel_unsupported()

    def regions(self, spec, value) -> list[dict]:
        """The Label Studio result regions of one predicted ``value``."""
        raise self.prelabel_unsupported()

    def adopt(self, task: dict, prediction: dict, spec, model) -> bool:
        """Take what a prediction of the serving version, already in Label Studio, holds into
        ``model`` (an LLM draft made elsewhere, say), so it is not computed again; True if taken."""
        return False

    # what `labelloop.backend.registry.ModelRegistry` asks a kind that prelabels
    def prior_version(self, spec, model_name: str) -> str:
        """The model version served before any training (changes with the encoder and labels)."""
        raise self.prelabel_unsupported()

    def prior_key(self, spec, model_name: str) -> tuple:
        """The cache key of the prior model (hashable)."""
        raise self.prelabel_unsupported()

    def prior_model(self, spec, model_name: str):
        """The model served before any training (zero-shot, say)."""
        raise self.prelabel_unsupported()

    def stored_model_fits(self, meta: dict, spec) -> str | None:
        """Why a stored model (its ``meta.json``) cannot serve ``spec``, or None when it can."""
        raise self.prelabel_unsupported()

    def load_model(self, path, meta: dict):
        """A stored model from its version directory."""
        raise self.prelabel_unsupported()

    def with_prior(self, trained, prior, meta: dict, *, prior_strength: float):
        """What serves once ``trained`` exists (it may still lean on the ``prior``)."""
        return trained

    # --- learn -------------------------------------------------------------------------------
    def training_item(self, task: dict, spec):
        """What a task's latest finished annotation teaches, or None."""
        raise self._unsupported("train models")

    def fit(self, items: Sequence, spec, *, model_name: str, **options):
        """A fitted model with ``save(directory)`` from ``training_item`` results."""
        raise self._unsupported("train models")

    # --- audit -------------------------------------------------------------------------------
    def audit(self, tasks: dict, spec, *, embed, n_folds: int = 5, progress=None, judge=None):
        """Findings for the project's labelled ``tasks`` (``{id: task JSON}``). ``judge(prompt,
        response) -> (score, reason)``: an LLM rubric, for kinds whose labels are free text."""
        raise KindNotSupported(f"the audit checks text classification labels; this is a {self.title} project")

    # --- export ------------------------------------------------------------------------------
    def example(self, task: dict, spec, *, audit_label=None) -> tuple[Example | None, str | None]:
        """``(example, None)``, ``(None, reason it is left out)``, or ``(None, None)`` when the task
        has nothing to export. ``audit_label``: the audit's consensus, where it is current."""
        raise self._unsupported("export")

    def render_options(self, spec, *, system: str | None, instruction: str | None) -> RenderOptions:
        return RenderOptions(self.name, system=system)

    def examples(self, tasks: dict, spec, *, audit: dict | None = None,
                 exclude_flagged: bool = False) -> tuple[list[Example], dict, list[str]]:
        """Examples from Label Studio task JSON; see `labelloop.model.export.examples.examples_from_tasks`."""
        return examples_from_tasks(tasks, lambda task, audit_label: self.example(task, spec, audit_label=audit_label),
                                   audit=audit, exclude_flagged=exclude_flagged)


def for_review(finding: dict) -> bool:
    """Whether an audit finding goes to the review queue in Label Studio. A kind marks report-only
    findings (near-duplicates that agree, outliers) with ``"review": False``; a finding without
    the key, from a kind that queues everything or from an older ``findings.jsonl``, is reviewed."""
    return bool(finding.get("review", True))


def review_queue(findings) -> list[dict]:
    """The findings for review in the order a reviewer gets them: lowest ``quality`` first, ties in
    the kind's order. `labelloop audit` writes this order into Label Studio's review view. Likely
    errors are not moved ahead of the rest: conflicting copies and tied votes then jumped lower-
    quality labels, and the first k held fewer flips (ChatterBot topics 0.881 vs 0.890, BBC News
    0.889 vs 0.964; docs/benchmarks.md)."""
    return sorted((f for f in findings if for_review(f)), key=lambda f: f["quality"])


def held_back(finding: dict) -> bool:
    """Whether ``export --exclude-flagged`` leaves the finding's task out until someone reviews it:
    a finding for review whose label is likely wrong or undecided. The classification audit marks
    labels the model doubts past Cleanlab's estimate of the errors ``"likely_error": False``; on
    ambiguous data most of them are right, and leaving them out cost more accuracy than the flips."""
    return for_review(finding) and bool(finding.get("likely_error", True))


def finished_annotation(task: dict, *, allow_empty: bool = False) -> dict | None:
    """The task's latest annotation that was neither skipped nor (unless ``allow_empty``) empty."""
    return latest_annotation(task.get("annotations"), allow_empty=allow_empty)


def task_text(task: Any, value_key: str, *, max_chars: int) -> tuple[str | None, str | None]:
    """Return ``(text, None)`` for a usable task, else ``(None, reason)``.

    Over-long texts are cut to ``max_chars``; lone surrogates and control characters are
    replaced (`clean_text`), so the tokenizer never sees them.
    """
    if not isinstance(task, dict):
        return None, f"task is a {type(task).__name__}, not an object"
    data = task.get("data")
    if not isinstance(data, dict):
        return None, "task has no data object"
    if value_key not in data:
        return None, f"task data has no field {value_key!r}"
    value = data[value_key]
    if not isinstance(value, str):
        return None, f"task data field {value_key!r} is a {type(value).__name__}, not text"
    if not value.strip():
        return None, f"task data field {value_key!r} is empty"
    return clean_text(value[:max_chars]), None
