"""Process-level cache of served models, keyed by project and model version.

label-studio-ml 1.0.9 builds a new model object on every ``/setup``, and Label Studio calls
``/setup`` before every prediction batch. So the heavy state (encoder weights, fitted heads)
lives here, once per process, and the per-request objects stay cheap.
"""
from __future__ import annotations

import logging
import threading

from labelloop.model.store import VERSION_PREFIX, ModelStore

logger = logging.getLogger(__name__)


class ModelRegistry:
    """Answers "which model serves this project now?" without reloading anything twice.

    What a model is comes from the project's kind (`labelloop.kinds`): its prior before any
    training (``prior_version``, ``prior_key``, ``prior_model``), whether a stored version still
    fits the label config (``stored_model_fits``), how it is read (``load_model``) and how it is
    served (``with_prior``).
    """

    def __init__(self, model_dir: str, model_name: str, *, prior_strength: float = 10.0, llm=None, ner=None):
        from labelloop.model.responses.llm import LLMConfig
        from labelloop.model.spans.prelabeler import NERConfig

        self.store = ModelStore(model_dir)
        self.model_name = model_name
        self.prior_strength = prior_strength
        #: the LLM endpoint's settings (`LLMConfig`); projects override some through extra params
        self.llm = llm if llm is not None else LLMConfig()
        #: the NER sources' settings (`NERConfig`)
        self.ner = ner if ner is not None else NERConfig()
        self._models: dict[tuple, object] = {}
        self._meta: dict[tuple[str, str], dict] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings) -> "ModelRegistry":
        """The registry a backend's `labelloop.backend.config.Settings` describe."""
        return cls(settings.model_dir, settings.model_name, prior_strength=settings.prior_strength, llm=settings.llm,
                   ner=settings.ner)

    def _stored_meta(self, project: str, version: str) -> dict | None:
        key = (project, version)
        if key not in self._meta:
            try:
                self._meta[key] = self.store.read_meta(project, version)
            except (OSError, ValueError) as exc:
                logger.error("project %s: stored version %s is unreadable (%s); serving the prior",
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

    def trained_version(self, project: str, spec, kind) -> str | None:
        """The stored version that fits ``spec``, or None (then the kind's prior serves)."""
        version = self.store.current_version(project)
        if version is None:
            return None
        meta = self._stored_meta(project, version)
        if meta is None:
            return None
        problem = kind.stored_model_fits(meta, spec)
        if problem:
            logger.warning("project %s: model %s was trained for another label config (%s); serving the prior "
                           "until it retrains", project, version, problem)
            return None
        return version

    def version_for(self, project: str, spec, kind) -> str:
        """The model version that would serve ``project``; cheap, loads no weights."""
        trained = self.trained_version(project, spec, kind)
        if trained is not None:
            return VERSION_PREFIX + trained
        return kind.prior_version(spec, self.model_name)

    def model_for(self, project: str, spec, kind):
        """Return ``(model, model_version)``, loading each one at most once per process."""
        trained = self.trained_version(project, spec, kind)
        if trained is not None:
            key = ("trained", project, trained)
            version = VERSION_PREFIX + trained
        else:
            key = kind.prior_key(spec, self.model_name)
            version = kind.prior_version(spec, self.model_name)

        # an older version of the same project is never served again
        return self.cached(key, lambda: self._build(project, spec, kind, trained),
                           family=("trained", project) if trained is not None else None), version

    def cached(self, key: tuple, build, *, family: tuple | None = None):
        """``build()``, once per process for ``key``; ``build`` runs under the registry's lock.
        ``family``: a key prefix whose other entries this one replaces (older versions of a project)."""
        value = self._models.get(key)
        if value is None:
            with self._lock:
                value = self._models.get(key)
                if value is None:
                    value = build()
                    if family is not None:
                        for old in [k for k in self._models if k[:len(family)] == family]:
                            del self._models[old]
                    self._models[key] = value
        return value

    def _build(self, project, spec, kind, trained):
        prior = kind.prior_model(spec, self.model_name)
        if trained is None:
            return prior
        meta = self._stored_meta(project, trained) or {}
        return kind.with_prior(self.store.load(project, trained, loader=kind.load_model), prior, meta,
                               prior_strength=self.prior_strength)
