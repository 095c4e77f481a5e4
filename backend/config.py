"""Backend settings, read from environment variables (flags of `labelloop serve` override them)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields

from labelloop.model.env import env_number
from labelloop.model.responses.llm import LLMConfig
from labelloop.model.spans.prelabeler import NERConfig


@dataclass
class Settings:
    """Everything the backend process is configured with.

    =====================  ==============================  =======================================
    field                  environment variable            meaning
    =====================  ==============================  =======================================
    model_dir              LABELLOOP_MODEL_DIR             per-project model versions live here
    model_name             LABELLOOP_MODEL_NAME            encoder: "default", a path or HF name
    batch_size             LABELLOOP_BATCH_SIZE            texts per model call inside /predict
    max_text_chars         LABELLOOP_MAX_TEXT_CHARS        longer task texts are truncated
    basic_auth_user        BASIC_AUTH_USER                 protect the backend with basic auth
    basic_auth_pass        BASIC_AUTH_PASS
    label_studio_url       LABEL_STUDIO_URL                for training/refresh (SDK calls)
    label_studio_api_key   LABEL_STUDIO_API_KEY
    strategy               LABELLOOP_STRATEGY              query strategy behind each score
    debounce_s             LABELLOOP_DEBOUNCE_S            quiet time before a retrain starts
    redis_url              REDIS_URL                       train through RQ workers if set
    diversity_clusters     LABELLOOP_DIVERSITY_CLUSTERS    k-means clusters the label stream rotates
                                                           through (0: none, score order alone)
    cluster_top_k          LABELLOOP_CLUSTER_TOP_K         most informative tasks that get a cluster
    finetune_min_labels    LABELLOOP_FINETUNE_MIN_LABELS   fine-tune the whole transformer from this
                                                           many labels on (0: never, head only)
    finetune_epochs        LABELLOOP_FINETUNE_EPOCHS
    prior_strength         LABELLOOP_PRIOR_STRENGTH        labels at which a trained model and the
                                                           zero-shot prior weigh the same (0: off)
    tune_trials            LABELLOOP_TUNE_TRIALS           Optuna trials per classification retrain
                                                           (0: off; the defaults are the first trial)
    tune_seconds           LABELLOOP_TUNE_SECONDS          time budget of one study
    backend_url            LABELLOOP_BACKEND_URL           this backend's URL as Label Studio knows it
                                                           (default: the URL a webhook came to)
    max_request_bytes      LABELLOOP_MAX_REQUEST_BYTES     larger request bodies get 413
    max_predict_tasks      LABELLOOP_MAX_PREDICT_TASKS     more tasks in one /predict get 413
    llm                    LABELLOOP_LLM_*, OPENAI_API_KEY the endpoint that drafts LLM responses
                                                           (`labelloop.model.responses.llm.LLMConfig`)
    ner                    LABELLOOP_NER_MODEL,            NER sources: pretrained pipeline,
                           LABELLOOP_GAZETTEERS,           gazetteer folder, aggregation, sentences
                           LABELLOOP_NER_*                 before the tagger trains
                                                           (`labelloop.model.spans.prelabeler.NERConfig`)
    =====================  ==============================  =======================================

    A project can choose its own strategy through the ML backend's "extra params" in Label
    Studio: ``{"strategy": "margin"}`` (sent with every /setup).
    """

    model_dir: str = "./models"
    model_name: str = "default"
    batch_size: int = 256
    max_text_chars: int = 20_000
    basic_auth_user: str | None = None
    basic_auth_pass: str | None = field(default=None, repr=False)
    label_studio_url: str | None = None
    label_studio_api_key: str | None = field(default=None, repr=False)
    strategy: str = "margin"  # best in bench/active_learning.py
    debounce_s: float = 0.5
    redis_url: str | None = None
    # bench/outcome.py: with bursts of 5 annotations, plain score order needed fewer labels than
    # rotating through clusters on all three datasets, so clusters are opt-in
    diversity_clusters: int = 0
    cluster_top_k: int = 1000
    finetune_min_labels: int = 0
    finetune_epochs: int = 3
    # bench/outcome.py: 10 has the best area under the learning curve on all three datasets; 3 reaches
    # 95% of full accuracy sooner but is worse than zero-shot after 20 labels on Rotten Tomatoes
    prior_strength: float = 10.0
    tune_trials: int = 0
    tune_seconds: float = 120.0
    backend_url: str | None = None
    max_request_bytes: int = 100 * 2**20
    max_predict_tasks: int = 20_000
    llm: LLMConfig = field(default_factory=LLMConfig)
    ner: NERConfig = field(default_factory=NERConfig)

    @classmethod
    def from_env(cls, **overrides) -> "Settings":
        env = os.environ
        values = dict(
            model_dir=env.get("LABELLOOP_MODEL_DIR") or cls.model_dir,
            model_name=env.get("LABELLOOP_MODEL_NAME") or cls.model_name,
            batch_size=env_number("LABELLOOP_BATCH_SIZE", cls.batch_size),
            max_text_chars=env_number("LABELLOOP_MAX_TEXT_CHARS", cls.max_text_chars),
            basic_auth_user=env.get("BASIC_AUTH_USER") or None,
            basic_auth_pass=env.get("BASIC_AUTH_PASS") or None,
            label_studio_url=env.get("LABEL_STUDIO_URL") or None,
            label_studio_api_key=env.get("LABEL_STUDIO_API_KEY") or None,
            strategy=env.get("LABELLOOP_STRATEGY") or cls.strategy,
            debounce_s=float(env.get("LABELLOOP_DEBOUNCE_S") or cls.debounce_s),
            redis_url=env.get("REDIS_URL") or None,
            diversity_clusters=env_number("LABELLOOP_DIVERSITY_CLUSTERS", cls.diversity_clusters),
            cluster_top_k=env_number("LABELLOOP_CLUSTER_TOP_K", cls.cluster_top_k),
            finetune_min_labels=env_number("LABELLOOP_FINETUNE_MIN_LABELS", cls.finetune_min_labels),
            finetune_epochs=env_number("LABELLOOP_FINETUNE_EPOCHS", cls.finetune_epochs),
            prior_strength=float(env.get("LABELLOOP_PRIOR_STRENGTH") or cls.prior_strength),
            tune_trials=env_number("LABELLOOP_TUNE_TRIALS", cls.tune_trials),
            tune_seconds=float(env.get("LABELLOOP_TUNE_SECONDS") or cls.tune_seconds),
            backend_url=env.get("LABELLOOP_BACKEND_URL") or None,
            max_request_bytes=env_number("LABELLOOP_MAX_REQUEST_BYTES", cls.max_request_bytes),
            max_predict_tasks=env_number("LABELLOOP_MAX_PREDICT_TASKS", cls.max_predict_tasks),
            llm=LLMConfig.from_env(),
            ner=NERConfig.from_env(),
        )
        known = {f.name for f in fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise TypeError(f"unknown settings: {sorted(unknown)}")
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if self.max_text_chars < 1:
            raise ValueError("max_text_chars must be at least 1")
        from labelloop.model.ranking import STRATEGIES, UnknownStrategyError

        if self.strategy not in STRATEGIES:
            raise UnknownStrategyError(f"unknown strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}")
        if self.max_request_bytes < 1024 or self.max_predict_tasks < 1:
            raise ValueError("LABELLOOP_MAX_REQUEST_BYTES must be at least 1024 and LABELLOOP_MAX_PREDICT_TASKS at least 1")
        if self.debounce_s < 0:
            raise ValueError("debounce_s must not be negative")
        if self.diversity_clusters < 0 or self.prior_strength < 0:
            raise ValueError("LABELLOOP_DIVERSITY_CLUSTERS and LABELLOOP_PRIOR_STRENGTH must not be negative")
        if self.tune_trials < 0 or self.tune_seconds <= 0:
            raise ValueError("LABELLOOP_TUNE_TRIALS must not be negative and LABELLOOP_TUNE_SECONDS must be positive")
        if bool(self.basic_auth_user) != bool(self.basic_auth_pass):
            raise ValueError("set both BASIC_AUTH_USER and BASIC_AUTH_PASS, or neither")

    @property
    def has_auth(self) -> bool:
        return bool(self.basic_auth_user and self.basic_auth_pass)


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach: 127.0.0.0/8, ::1, localhost."""
    import ipaddress

    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name may resolve anywhere


class UnauthenticatedExposure(ValueError):
    """``serve`` was asked to listen beyond loopback without credentials."""


def check_exposure(settings: Settings, host: str, *, allow_unauthenticated: bool = False) -> None:
    """Refuse to listen off loopback without Basic auth, unless explicitly allowed."""
    if is_loopback(host) or settings.has_auth or allow_unauthenticated:
        return
    raise UnauthenticatedExposure(
        f"refusing to listen on {host} without authentication: anyone who reaches it could read task texts "
        "through /predict and start training runs. Set BASIC_AUTH_USER and BASIC_AUTH_PASS (and the same "
        "user and password under Basic Authentication when you connect the model in Label Studio), or pass "
        "--allow-unauthenticated on a network you trust.")
