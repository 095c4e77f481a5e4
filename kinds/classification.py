"""Text classification (Choices over Text): the one kind that prelabels, learns and is audited so far."""
from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from labelloop.label_config.regions import choices_result, chosen_labels, latest_by_annotator
from labelloop.label_config.spec import ClassificationSpec
from labelloop.model import ranking
from labelloop.model.classification import load_model
from labelloop.model.classification.audit import audit_labels
from labelloop.model.classification.classifier import (BlendedClassifier, EmbeddingClassifier, ZeroShotClassifier,
                                                      align_columns)
from labelloop.model.classification.consensus import majority_vote, majority_vote_multilabel
from labelloop.model.classification.label_issues import N_FOLDS
from labelloop.model.classification.regularisation import AUTO
from labelloop.model.errors import NotEnoughLabelsError
from labelloop.model.export.formats import Example, RenderOptions
from labelloop.model.store import VERSION_PREFIX
from labelloop.model.text_cleaning import clean_text

from .base import ProjectKind, finished_annotation

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabelledTask:
    """What one annotated task teaches: its text and its latest finished label(s)."""

    task_id: int
    text: str
    labels: tuple[str, ...]
    annotation_id: int
    updated_at: str


def _known_and_unknown(annotation: dict, spec: ClassificationSpec) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The labels an annotation chose, split into those in the label config and those not."""
    chosen = chosen_labels(annotation.get("result"), spec)
    return (tuple(label for label in chosen if label in spec.labels),
            tuple(label for label in chosen if label not in spec.labels))


def annotator_labels(task: dict, spec: ClassificationSpec, unknown: set | None = None) -> dict:
    """Latest usable label per annotator of one task: ``{annotator id: label}``, where the label
    is a string, or a sorted tuple of labels for multi-label configs.

    Labels that are not in the config are left out and added to ``unknown``.
    """
    out = {}
    for annotator, latest in latest_by_annotator(task.get("annotations")).items():
        labels, unknown_here = _known_and_unknown(latest, spec)
        if unknown is not None:
            unknown.update(unknown_here)
        if labels:
            out[annotator] = tuple(sorted(labels)) if spec.multi_label else labels[0]
    return out


def other_controls_note(tasks: dict, spec: ClassificationSpec, what: str) -> str | None:
    """Says which answers of a config's further <Choices> controls ``what`` ("exported",
    "audited") leaves out, counted over finished annotations; None when no annotation holds any."""
    if not spec.other_controls:
        return None
    counts = Counter()
    for task in tasks.values():
        for annotation in task.get("annotations") or ():
            if not annotation.get("was_cancelled"):
                counts.update({r.get("from_name") for r in annotation.get("result") or () if isinstance(r, dict)}
                              & set(spec.other_controls))
    if not counts:
        return None
    held = ", ".join(f'<Choices name="{name}"> in {counts[name]}' for name in spec.other_controls if counts[name])
    return (f'only the labels of <Choices name="{spec.from_name}">, the config\'s first, are {what}: the answers of '
            f"{held} annotations stay in Label Studio")


def zero_shot_version(model_name: str, spec: ClassificationSpec) -> str:
    """Changes whenever the encoder or the label set changes, so Label Studio re-predicts."""
    digest = hashlib.sha1(
        json.dumps([model_name, list(spec.labels), spec.multi_label]).encode()).hexdigest()[:8]
    return f"{VERSION_PREFIX}zeroshot-{digest}"


class ClassificationKind(ProjectKind):
    name = "classification"
    title = "text classification"
    spec_type = ClassificationSpec
    prelabels = True
    trains = True

    def __init__(self):
        self._warned: set = set()  # Label Studio calls /setup before every batch: warn once per config

    def configure(self, registry, project: str, spec: ClassificationSpec, extra_params: dict) -> None:
        if spec.other_controls and (project, spec) not in self._warned:  # /setup's text shows only on refusal
            self._warned.add((project, spec))
            logger.warning("project %s: the config has %d <Choices> controls over text; labelloop prelabels, "
                           "learns, audits and exports %r, the first, and leaves %s alone", project,
                           1 + len(spec.other_controls), spec.from_name, ", ".join(spec.other_controls))

    # --- prelabel ------------------------------------------------------------------------------
    def prior_version(self, spec: ClassificationSpec, model_name: str) -> str:
        return zero_shot_version(model_name, spec)

    def prior_key(self, spec: ClassificationSpec, model_name: str) -> tuple:
        return ("zeroshot", model_name, spec.labels, spec.multi_label)

    def prior_model(self, spec: ClassificationSpec, model_name: str):
        return ZeroShotClassifier(labels=spec.labels, model_name=model_name, multi_label=spec.multi_label).fit()

    def stored_model_fits(self, meta: dict, spec: ClassificationSpec) -> str | None:
        """Why a stored model cannot serve ``spec`` (None when it can)."""
        extra = set(meta.get("classes", [])) - set(spec.labels)
        if extra or bool(meta.get("multi_label")) != spec.multi_label:
            return f"labels not in the config now: {sorted(extra) or 'none, but the choice type changed'}"
        return None

    def load_model(self, path, meta: dict):
        return load_model(path, meta)

    def with_prior(self, trained, prior, meta: dict, *, prior_strength: float):
        # while labels are few, the zero-shot prior still knows more than the head; a tuned
        # retrain chose its own strength
        tuned = (meta.get("tuning") or {}).get("params", {}).get("prior_strength")
        return BlendedClassifier(trained, prior, n_labels=int(meta.get("n_labels", 10**9)),
                                 prior_strength=prior_strength if tuned is None else float(tuned))

    def model_version(self, registry, project: str, spec: ClassificationSpec) -> str:
        return registry.version_for(project, spec, self)

    def serving_model(self, registry, project: str, spec: ClassificationSpec):
        return registry.model_for(project, spec, self)

    def predict(self, texts: Sequence[str], spec: ClassificationSpec, model, *, strategy: str, limit=None):
        proba = align_columns(model.predict_proba(list(texts)), model.classes_, spec.labels)
        scores = ranking.score(proba, strategy=strategy, multi_label=spec.multi_label)
        labels = np.asarray(spec.labels, dtype=object)
        if spec.multi_label:
            values = [labels[row >= model.threshold].tolist() or [labels[row.argmax()]] for row in proba]
        else:
            values = [[labels[row.argmax()]] for row in proba]
        return values, scores

    def regions(self, spec: ClassificationSpec, value) -> list[dict]:
        return [choices_result(spec, value)]

    # --- learn ---------------------------------------------------------------------------------
    def training_item(self, task: dict, spec: ClassificationSpec) -> LabelledTask | None:
        """The task's label(s) from its latest usable annotation, or None.

        Labels that are not in the label config are dropped with a log line; an annotation left
        with no known label is ignored. Single-label projects take the first chosen label.
        """
        annotation = finished_annotation(task)
        if annotation is None:
            return None
        text = (task.get("data") or {}).get(spec.value_key)
        if not isinstance(text, str) or not text.strip():
            logger.warning("task %s: annotated, but its %r field holds no text; not used for training",
                           task.get("id"), spec.value_key)
            return None
        labels, unknown = _known_and_unknown(annotation, spec)
        if unknown:
            logger.warning("task %s annotation %s: labels %s are not in the label config %s; ignored",
                           task.get("id"), annotation.get("id"), list(unknown), list(spec.labels))
        if not labels:
            return None
        if not spec.multi_label:
            labels = labels[:1]
        return LabelledTask(int(task["id"]), clean_text(text), labels, int(annotation.get("id", 0)),
                            str(annotation.get("updated_at") or ""))

    def fit(self, items: Sequence[LabelledTask], spec: ClassificationSpec, *, model_name: str,
            finetune_min_labels: int = 0, finetune_epochs: int = 3, tune_trials: int = 0,
            tune_seconds: float = 120.0, C: float | str = AUTO, **_):
        """The head over frozen embeddings; a full fine-tune once there are enough labels (if enabled).
        With ``tune_trials``, an Optuna study picks the parameters first (`labelloop.model.
        classification.tuning`); the model then carries ``tuning_`` (its metadata). ``C``: the
        head's inverse regularisation where no study chose one.
        Raises `NotEnoughLabelsError` when there is nothing to learn a decision from."""
        finetune = bool(finetune_min_labels and len(items) >= finetune_min_labels)
        y = [item.labels for item in items] if spec.multi_label else [item.labels[0] for item in items]
        texts = [item.text for item in items]
        tuned = None
        if tune_trials:
            from labelloop.model.classification.tuning import tune

            tuned = tune(texts, y, labels=spec.labels, multi_label=spec.multi_label, model_name=model_name,
                         n_trials=tune_trials, timeout_s=tune_seconds, finetune=finetune)
            if tuned is None:
                logger.info("tuning skipped: too few labels of some class to cross-validate; defaults used")
        params = tuned.params if tuned else {}
        if finetune:
            from labelloop.model.classification.finetune import FineTunedClassifier

            clf = FineTunedClassifier(model_name=model_name, multi_label=spec.multi_label,
                                      epochs=int(params.get("epochs", finetune_epochs)),
                                      **({"learning_rate": params["learning_rate"]} if "learning_rate" in params else {}))
        else:
            clf = EmbeddingClassifier(model_name=model_name, multi_label=spec.multi_label, C=params.get("C", C))
        clf.fit(texts, y)
        if tuned is not None:
            clf.tuning_ = tuned.as_meta()
        return clf

    # --- audit ---------------------------------------------------------------------------------
    def audit(self, tasks: dict, spec: ClassificationSpec, *, embed, n_folds: int = N_FOLDS, progress=None,
              judge=None):
        """`audit_labels` over the labelled tasks, plus ``empty`` task ids (no usable text) and
        messages about labels that are not in the config."""
        rows, texts, empty, unknown = [], [], [], set()
        for task in tasks.values():
            labels = annotator_labels(task, spec, unknown)
            if not labels:
                continue
            text = (task.get("data") or {}).get(spec.value_key)
            if not isinstance(text, str) or len(text.strip()) < 3 or not any(ch.isalnum() for ch in text):
                empty.append(task["id"])
                continue
            rows.append((task["id"], labels))
            texts.append(clean_text(text))
        if not rows:
            raise NotEnoughLabelsError("the project has no finished annotations to audit")
        X = embed(texts)
        if progress:
            progress("cross-validating, Cleanlab, near-duplicates and outliers", None)
        result = audit_labels(rows, X, labels=spec.labels, multi_label=spec.multi_label, n_folds=n_folds, texts=texts)
        if unknown:
            result.messages.insert(0, f"annotations use labels that are not in the label config, left out: "
                                      f"{', '.join(sorted(unknown)[:10])}")
        if note := other_controls_note(tasks, spec, "audited"):
            result.messages.insert(0, note)
        result.findings += [{"task_id": int(t), "given": None, "suggested": None, "quality": 0.0, "agreement": None,
                             "n_annotators": None, "issues": ["empty_text"], "review": True,
                             "reason": "empty or unintelligible text"}
                            for t in empty]
        result.findings.sort(key=lambda f: (not f["review"], f["quality"]))
        return result

    # --- export --------------------------------------------------------------------------------
    def example(self, task: dict, spec: ClassificationSpec, *, audit_label=None):
        """The annotators' consensus: the audit's (CROWDLAB) where it is current, else the
        majority vote; a tie without an audit is left out."""
        labels = annotator_labels(task, spec)
        if not labels:
            return None, None
        votes = [list(labels.values())]
        vote = majority_vote_multilabel(votes) if spec.multi_label else majority_vote(votes)
        chosen = vote.label[0]
        if len(labels) > 1 and vote.agreement[0] < 1.0:
            if audit_label is not None:
                chosen = audit_label
            elif vote.tie[0]:
                return None, "tied annotators (run labelloop audit to resolve)"
        chosen = tuple(chosen) if isinstance(chosen, (list, tuple)) else (str(chosen),)
        return Example(task["id"], (task.get("data") or {}).get(spec.value_key), labels=chosen), None

    def examples(self, tasks: dict, spec: ClassificationSpec, *, audit: dict | None = None,
                 exclude_flagged: bool = False):
        examples, skipped, messages = super().examples(tasks, spec, audit=audit, exclude_flagged=exclude_flagged)
        if note := other_controls_note(tasks, spec, "exported"):
            messages.insert(0, note)
        return examples, skipped, messages

    def render_options(self, spec: ClassificationSpec, *, system, instruction) -> RenderOptions:
        return RenderOptions(self.name, tuple(spec.labels), spec.multi_label, system, instruction)
