"""The label-studio-ml model class: cheap to build, because label-studio-ml builds one per /setup."""
from __future__ import annotations

from label_studio_ml.model import LabelStudioMLBase

from labelloop.kinds import parse as parse_config
from labelloop.kinds.base import extra_params_dict
from labelloop.model.ranking import STRATEGIES, UnknownStrategyError

from .config import Settings
from .predictor import predict_tasks
from .registry import ModelRegistry


class LabelloopModel(LabelStudioMLBase):
    """Prelabels a project's tasks with the model that currently serves it.

    Construction parses the label config (cached), looks up the project kind and the serving
    model version; it never loads weights. `predict` loads them once per process through the
    registry. Raises `UnsupportedLabelConfig` for a config labelloop cannot prelabel (its
    subclass `KindNotSupported` names the kind), `ProjectSettingsError` for extra params that
    are not a JSON object, `UnknownStrategyError` for a bad strategy in them, and, with
    ``setup``, whatever the kind's ``configure`` raises (for LLM projects: a bad template or an
    unusable endpoint).
    """

    settings: Settings = Settings()
    registry: ModelRegistry | None = None

    @classmethod
    def configure(cls, settings: Settings) -> None:
        cls.settings = settings
        cls.registry = ModelRegistry.from_settings(settings)

    def __init__(self, label_config: str | None = None, train_output=None, project: str | None = None,
                 extra_params: dict | str | None = None, setup: bool = False, **kwargs):
        self.spec, self.kind = parse_config(label_config)
        super().__init__(label_config=label_config, train_output=train_output, **kwargs)
        if self.registry is None:
            self.configure(self.settings)
        self.project = str(project or "unknown")
        extra_params = extra_params_dict(extra_params)
        if setup:  # the project's settings arrive with /setup only; the kind keeps what it needs
            self.kind.configure(self.registry, self.project, self.spec, extra_params)
        self.model_version = self.kind.model_version(self.registry, self.project, self.spec)
        if extra_params.get("strategy"):
            strategy = str(extra_params["strategy"])
            if strategy not in STRATEGIES:
                raise UnknownStrategyError(
                    f"extra params ask for strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
            self.registry.remember_strategy(self.project, strategy)

    def predict(self, tasks, **kwargs) -> list:
        """One ``{"result", "score", "model_version"}`` (or ``[]``: nothing yet) per task, in order.

        Slow models draft at most ``LABELLOOP_LLM_MAX_INLINE`` new answers here: Label Studio
        waits 100 s for /predict; `labelloop prelabel` drafts whole projects.
        """
        model, self.model_version = self.kind.serving_model(self.registry, self.project, self.spec)
        return predict_tasks(tasks, self.spec, self.kind, model, self.model_version,
                             batch_size=self.settings.batch_size,
                             max_chars=self.settings.max_text_chars,
                             strategy=self.registry.strategy_for(self.project, self.settings.strategy),
                             limit=self.settings.llm.max_inline)
