"""Process-level cache of classifiers, keyed by project and model version.

label-studio-ml 1.0.9 builds a new model object on every ``/setup``, and Label Studio calls
``/setup`` before every prediction batch. So the heavy state (encoder weights, fitted heads)
lives here, once per process, and the per-request objects stay cheap.
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading

from labelloop.model.classification.classifier import BlendedClassifier, ZeroShotClassifier
from labelloop.model.store import ModelStore

from labelloop.label_config.spec import ClassificationSpec

logger = logging.getLogger(__name__)

VERSION_PREFIX = "labelloop-"


def zero_shot_version(model_name: str, spec: ClassificationSpec) -> str:
    """Changes whenever the encoder or the label set changes, so Label Studio re-predicts."""
    digest = hashlib.sha1(
        json.dumps([model_name, list(spec.labels), spec.multi_label]).encode()).hexdigest()[:8]
    return f"{VERSION_PREFIX}zeroshot-{digest}"


class ModelRegistry:
    """Answers "which classifier serves this project now?" without reloading anything twice."""

    def __init__(self, model_dir: str, model_name: str, *, prior_strength: float = 50.0):
        self.store = ModelStore(model_dir)
        self.model_name = model_name
        self.prior_strength = prior_strength
        self._classifiers: dict[tuple, object] = {}
        self._meta: dict[tuple[str, str], dict] = {}
        self._lock = threading.Lock()

    def _stored_meta(self, project: str, version: str) -> dict | None:
        key = (project, version)
        if key not in self._meta:
            try:
                self._meta[key] = self.store.read_meta(project, version)
            except (OSError, ValueError) as exc:
                logger.error("project %s: stored version %s is unreadable (%s); serving zero-shot",
                             project, version, exc)
                return None
        return self._meta[key]

    def strategy_for(self, project: str, default: str) -> str:
        """The query strategy a project chose through its ML backend extra params, else ``default``."""
        return self.store.read_settings(project).get("strategy") or default

    def remember_strategy(self, project: str, strategy: str | None) -> None:
        """Persist a project's strategy (from /setup's extra params) for every worker process."""
        current = self.store.read_settings(project)
        if strategy and current.get("strategy") != strategy:
            self.store.write_settings(project, {**current, "strategy": strategy})

    def trained_version(self, project: str, spec: ClassificationSpec) -> str | None:
        """The stored version that fits ``spec``, or None (then zero-shot serves)."""
        version = self.store.current_version(project)
        if version is None:
            return None
        meta = self._stored_meta(project, version)
        if meta is None:
            return None
        extra = set(meta.get("classes", [])) - set(spec.labels)
        if extra or bool(meta.get("multi_label")) != spec.multi_label:
            logger.warning("project %s: model %s was trained for another label config "
                           "(labels not in the config now: %s); serving zero-shot until it retrains",
                           project, version, sorted(extra) or "none, but the choice type changed")
            return None
        return version

    def version_for(self, project: str, spec: ClassificationSpec) -> str:
        """The model version that would serve ``project``; cheap, loads no weights."""
        trained = self.trained_version(project, spec)
        if trained is not None:
            return VERSION_PREFIX + trained
        return zero_shot_version(self.model_name, spec)

    def classifier_for(self, project: str, spec: ClassificationSpec):
        """Return ``(classifier, model_version)``, loading each one at most once per process."""
        trained = self.trained_version(project, spec)
        if trained is not None:
            key = ("trained", project, trained)
            version = VERSION_PREFIX + trained
        else:
            key = ("zeroshot", self.model_name, spec.labels, spec.multi_label)
            version = zero_shot_version(self.model_name, spec)
        clf = self._classifiers.get(key)
        if clf is None:
            with self._lock:
                clf = self._classifiers.get(key)
                if clf is None:
                    clf = self._build(key, project, spec, trained)
                    # an older version of the same project is never served again
                    for old in [k for k in self._classifiers if k[:2] == ("trained", project)]:
                        del self._classifiers[old]
                    self._classifiers[key] = clf
        return clf, version

    def _build(self, key, project, spec, trained):
        zero_shot = ZeroShotClassifier(labels=spec.labels, model_name=self.model_name,
                                       multi_label=spec.multi_label).fit()
        if trained is None:
            return zero_shot
        # while labels are few, the zero-shot prior still knows more than the head
        meta = self._stored_meta(project, trained) or {}
        return BlendedClassifier(self.store.load(project, trained), zero_shot,
                                 n_labels=int(meta.get("n_labels", 10**9)), prior_strength=self.prior_strength)
