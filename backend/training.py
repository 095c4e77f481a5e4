"""Retraining in the background: webhooks in, a new model version and fresh predictions out.

The webhook view only calls `Trainer.submit`, which returns at once (Label Studio's webhook
timeout is 1 s). A burst of events for one project is debounced into one run. A run:

1. syncs a snapshot of the project's annotated tasks through the SDK (incrementally, deletions
   included, see `labelloop.scripts.sync.ProjectSnapshot`);
2. fits the project kind's model (`labelloop.kinds`) and stores a new version atomically, which
   switches /predict to it (a crash before that leaves the previous version serving);
3. re-predicts every unlabelled task with the new version, a score and a diversity cluster,
   imports those predictions, and moves the project's model version, so that Label Studio's
   uncertainty sampling keeps serving the most informative task.

Kinds that do not train (LLM responses: the endpoint's model is what it is) skip steps 1 and 2,
and only a manual start (``START_TRAINING``, as `labelloop rank` sends) refreshes their predictions,
from stored drafts where they exist.

With Redis (``REDIS_URL``), runs go through an RQ queue instead, so several backend replicas
share one trainer (`labelloop worker`); without it, an in-process thread does the work. Either way
a run holds its project's training lock (`labelloop.backend.locks`), so two never overlap, and
when Label Studio cannot be reached the run is retried with backoff.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from labelloop.kinds import parse as parse_config
from labelloop.label_config.spec import UnsupportedLabelConfig
from labelloop.model.augment import without_variants
from labelloop.model.errors import LabelloopError, NotEnoughLabelsError
from labelloop.model.store import ModelStore, project_key

from .config import Settings
from .locks import training_lock
from .predictor import predict_tasks
from .registry import ModelRegistry

logger = logging.getLogger(__name__)

TRAIN_EVENTS = frozenset({"ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED", "START_TRAINING"})
# deletions do not bump a task's updated_at, and a manual start should see everything
FULL_PULL_EVENTS = frozenset({"ANNOTATIONS_DELETED", "START_TRAINING"})


# seconds before each retry of a run that found Label Studio unreachable (about 40 minutes in all)
RETRY_BACKOFF_S = (5, 10, 20, 40, 60, 120, 300, 600, 1200)


class LabelStudioDown(LabelloopError):
    """Label Studio did not answer (refused, timed out, 5xx): the run should be retried later."""


class LabelStudioRefused(LabelloopError):
    """Label Studio answered a request with an error (a revoked API key, a deleted project)."""


def _retry_delay(exc: LabelStudioDown, attempt: int, backoff_s=RETRY_BACKOFF_S) -> float | None:
    """Seconds to wait before retry number ``attempt + 1`` (logged), or None to give up (logged)."""
    if attempt >= len(backoff_s):
        logger.error("%s; gave up after %d attempts, the next annotation event retries", exc, attempt + 1)
        return None
    logger.warning("%s; retrying in %.0f s (attempt %d of %d)", exc, backoff_s[attempt], attempt + 2,
                   len(backoff_s) + 1)
    return backoff_s[attempt]


def _label_studio_down(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says Label Studio is down, rather than that a request was wrong."""
    import httpx
    import requests

    while exc is not None:
        if isinstance(exc, (httpx.TransportError, requests.ConnectionError, requests.Timeout, ConnectionError)):
            return True
        status = getattr(exc, "status_code", None)
        if isinstance(status, int) and status >= 500:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


@dataclass
class RunReport:
    project_id: int
    trained_version: str | None = None
    serving_version: str | None = None
    n_labels: int = 0
    n_refreshed: int = 0
    seconds: dict = field(default_factory=dict)
    message: str = ""


def retrain_project(project_id: int, *, full: bool, settings: Settings, registry: ModelRegistry,
                    client=None, should_stop=None) -> RunReport:
    """One training run for one project; see the module docstring.

    ``should_stop()`` turning true (newer events for the project) cuts the prediction refresh
    short; the model itself is always stored first. Raises `LabelStudioDown` when Label
    Studio stops answering at any step (the stored model stays as it is); callers retry.
    """
    try:
        return _retrain(project_id, full=full, settings=settings, registry=registry, client=client,
                        should_stop=should_stop)
    except LabelStudioDown:
        raise
    except Exception as exc:
        from labelloop.scripts.client import error_text, label_studio_error

        # the SDK's ApiError prints every response header, Label Studio's session cookie included:
        # logs and RQ's stored tracebacks get the words, not the chained error
        if _label_studio_down(exc):
            raise LabelStudioDown(
                f"project {project_id}: Label Studio at {settings.label_studio_url} is unreachable "
                f"({type(exc).__name__}: {error_text(exc)}); the serving model is unchanged") from None
        if (message := label_studio_error(exc)) is not None:
            raise LabelStudioRefused(f"project {project_id}: {message}; the serving model is unchanged") from None
        raise


def _retrain(project_id: int, *, full: bool, settings: Settings, registry: ModelRegistry, client,
             should_stop) -> RunReport:
    from labelloop.scripts.augment import MODEL_VERSION as AUGMENT_VERSION
    from labelloop.scripts.client import connect, error_text
    from labelloop.scripts.predictions import replace_unlabelled_predictions, unlabelled_tasks

    report = RunReport(project_id)
    t0 = time.perf_counter()
    try:
        client = client or connect(settings.label_studio_url, settings.label_studio_api_key)
        project = client.projects.get(id=project_id)
    except Exception as exc:  # the SDK raises ApiError, httpx and pydantic errors
        if _label_studio_down(exc):
            raise
        report.message = f"project {project_id}: cannot read it from Label Studio ({error_text(exc)}); nothing trained"
        logger.error(report.message)
        return report
    try:
        spec, kind = parse_config(project.label_config)
        if not kind.prelabels:
            raise kind.prelabel_unsupported()
    except UnsupportedLabelConfig as exc:
        report.message = f"project {project_id}: {exc}; nothing trained"
        logger.error(report.message)
        return report
    key = project_key(project_id, project.created_at)
    if not kind.trains and not full:  # annotations teach an outside LLM nothing: only a manual start refreshes
        report.message = f"project {project_id}: {kind.title} projects do not train; nothing to do"
        logger.info(report.message)
        return report
    if kind.trains and not _train(project_id, key, spec, kind, client=client, full=full, settings=settings,
                                  registry=registry, report=report, started=t0):
        return report

    t2 = time.perf_counter()
    model, version = kind.serving_model(registry, key, spec)
    report.serving_version = version
    # a variant from `labelloop augment` keeps the prediction it came with: its source's label
    tasks, synthetic = without_variants(list(unlabelled_tasks(client, project_id, with_predictions=not kind.trains)))
    if not kind.trains:
        # drafts that `labelloop prelabel` imported from elsewhere are not drafted again
        adopted = sum(kind.adopt(task, prediction, spec, model) for task in tasks
                      for prediction in task.pop("predictions", ()) if prediction.get("model_version") == version)
        if adopted:
            logger.info("project %s: %d drafts taken from Label Studio's predictions", project_id, adopted)
        model.progress = _progress_log(project_id, "drafts")
    predictions = predict_tasks(tasks, spec, kind, model, version, batch_size=settings.batch_size,
                                max_chars=settings.max_text_chars,
                                strategy=registry.strategy_for(key, settings.strategy),
                                n_clusters=settings.diversity_clusters)
    # an empty entry is a task with nothing to predict yet (an LLM draft that failed: logged)
    predictions = [{**prediction, "task": task["id"]} for task, prediction in zip(tasks, predictions) if prediction]
    report.n_refreshed = replace_unlabelled_predictions(
        client, project_id, predictions, model_version=version, cluster_top_k=settings.cluster_top_k,
        should_stop=should_stop, keep=sorted(synthetic),
        # variants created while this refresh ran are not in ``synthetic``: their version spares them
        keep_versions=(AUGMENT_VERSION,))
    report.seconds["refresh"] = time.perf_counter() - t2
    if report.n_refreshed < len(predictions):
        report.message = (f"project {project_id}: refresh stopped after {report.n_refreshed}/{len(predictions)} "
                          "tasks: newer annotations arrived, the next run continues")
        logger.info(report.message)
    else:
        logger.info("project %s: %d unlabelled tasks re-predicted with %s in %.1f s", project_id,
                    report.n_refreshed, version, report.seconds["refresh"])
    return report


def _train(project_id: int, key: str, spec, kind, *, client, full: bool, settings: Settings, registry: ModelRegistry,
           report: RunReport, started: float) -> bool:
    """Steps 1 and 2 of `retrain_project`; False when there is nothing more to do."""
    from labelloop.scripts.sync import ProjectSnapshot

    store: ModelStore = registry.store
    # the caller holds the project's training lock: any half-written version is a killed run's
    if removed := store.discard_partial(key):
        logger.warning("project %s: removed %s left half-written by an interrupted run", project_id, ", ".join(removed))
    snapshot = ProjectSnapshot(store.project_dir(key), project_id, annotated_only=True)
    fetched = snapshot.sync(client, full=full).fetched
    items = [item for task in snapshot.tasks().values() if (item := kind.training_item(task, spec)) is not None]
    # items come from the current config each run: labels removed from it are left out (and logged)
    report.n_labels = len(items)
    report.seconds["pull"] = time.perf_counter() - started

    t1 = time.perf_counter()
    logger.info("project %s: fitting on %d labels", project_id, len(items))
    try:
        model = kind.fit(items, spec, model_name=settings.model_name, finetune_min_labels=settings.finetune_min_labels,
                         finetune_epochs=settings.finetune_epochs, tune_trials=settings.tune_trials,
                         tune_seconds=settings.tune_seconds, registry=registry, project=key)
        meta = {"n_labels": len(items), "trained_at": time.time()}
        if (head_C := getattr(model, "C_", None)) is not None:
            meta["head_C"] = head_C  # what "auto" chose, for the logs and the team's questions
        if tuning := getattr(model, "tuning_", None):
            meta["tuning"] = tuning
            logger.info("project %s: tuned in %.1f s over %d trials%s: cross-validated %s %.3f (defaults %.3f, "
                        "best trial %.3f%s) with %s", project_id, tuning["seconds"], tuning["trials"],
                        " (time budget reached)" if tuning["timed_out"] else "", tuning["metric"],
                        tuning["cv_score"], tuning["default_cv_score"], tuning["best_trial_cv_score"],
                        ", within noise: defaults kept" if tuning["kept_defaults"] else "", tuning["params"])
        report.trained_version = store.save(key, model, meta=meta)
        report.seconds["fit"] = time.perf_counter() - t1
        logger.info("project %s: model %s serves now (%d labels, %sfit in %.2f s; pulled %d %s tasks in %.2f s)",
                    project_id, report.trained_version, len(items),
                    "" if head_C is None else f"head C {head_C:g}, ", report.seconds["fit"], fetched,
                    "annotated" if full else "changed", report.seconds["pull"])
    except NotEnoughLabelsError as exc:
        report.message = f"project {project_id}: not training yet: {exc}"
        logger.info(report.message)
        if not full:
            return False  # nothing changed; a manual START_TRAINING still refreshes below

    return True


def _progress_log(project_id: int, what: str, *, every_s: float = 10.0):
    """A progress callback that logs a count every ``every_s`` seconds (background runs have no bar)."""
    state = {"done": 0, "logged": time.monotonic()}
    lock = threading.Lock()

    def advance(n: int) -> None:
        with lock:
            state["done"] += n
            if time.monotonic() - state["logged"] >= every_s:
                state["logged"] = time.monotonic()
                logger.info("project %s: %d %s made", project_id, state["done"], what)
    return advance


class Trainer:
    """An in-process worker thread that debounces events per project and runs one at a time.

    Several of these (one per gunicorn worker) may share a model directory: the training lock
    serialises their runs per project.
    """

    def __init__(self, settings: Settings, registry: ModelRegistry, *, debounce_s: float | None = None,
                 retry_backoff_s: tuple[float, ...] = RETRY_BACKOFF_S):
        self.settings = settings
        self.registry = registry
        self.debounce_s = settings.debounce_s if debounce_s is None else debounce_s
        self.retry_backoff_s = retry_backoff_s
        self._pending: dict[int, tuple[float, bool]] = {}  # project -> (run after, full pull)
        self._attempts: dict[int, int] = {}  # project -> failed attempts in a row (Label Studio down)
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._running: int | None = None
        self.reports: list[RunReport] = []

    def submit(self, project_id: int, event: str, *, delay_s: float | None = None) -> None:
        with self._cond:
            _, full = self._pending.get(project_id, (0.0, False))
            wait = self.debounce_s if delay_s is None else delay_s
            self._pending[project_id] = (time.monotonic() + wait, full or event in FULL_PULL_EVENTS)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="labelloop-trainer", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def has_pending(self, project_id: int) -> bool:
        with self._cond:
            return project_id in self._pending

    def is_busy(self) -> bool:
        with self._cond:
            return bool(self._pending) or self._running is not None

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.is_busy():
                return True
            time.sleep(0.05)
        return False

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    self._cond.wait()
                project_id, (due, full) = min(self._pending.items(), key=lambda kv: kv[1][0])
                delay = due - time.monotonic()
                if delay > 0:
                    self._cond.wait(timeout=delay)
                    continue  # new events may have moved the deadline
                del self._pending[project_id]
                self._running = project_id
            try:
                with training_lock(project_id, model_dir=self.settings.model_dir):
                    report = retrain_project(project_id, full=full, settings=self.settings, registry=self.registry,
                                             should_stop=lambda pid=project_id: self.has_pending(pid))
                self.reports = (self.reports + [report])[-50:]
                self._attempts.pop(project_id, None)
            except LabelStudioDown as exc:
                self._retry_later(project_id, full, exc)
            except Exception:  # a failed run must never kill the worker or the server
                logger.exception("project %s: training run failed; the previous model keeps serving", project_id)
            finally:
                with self._cond:
                    self._running = None

    def _retry_later(self, project_id: int, full: bool, exc: LabelStudioDown) -> None:
        attempt = self._attempts.pop(project_id, 0)
        delay = _retry_delay(exc, attempt, self.retry_backoff_s)
        if delay is not None:
            self._attempts[project_id] = attempt + 1
            self.submit(project_id, "START_TRAINING" if full else "ANNOTATION_UPDATED", delay_s=delay)


# Redis keys of the RQ path: a run is queued and not started yet; a full pull was asked for
_QUEUED_KEY = "labelloop:train-queued:{}"
_FULL_KEY = "labelloop:train-full:{}"


def rq_job(project_id: int, full: bool = False) -> dict:
    """The RQ entry point: settings come from the worker's environment.

    Under the project's lock, the job first clears its "queued" mark (events from now on queue
    another run) and takes any full pull asked for meanwhile, so no event is dropped. While Label
    Studio is down it retries with backoff, holding the lock (the job's own loop: RQ's interval
    retries would need a scheduler, which a killed worker can hold for minutes).
    """
    from redis import Redis

    settings = Settings.from_env()
    registry = ModelRegistry.from_settings(settings)
    connection = Redis.from_url(settings.redis_url)
    with training_lock(project_id, model_dir=settings.model_dir, redis_url=settings.redis_url):
        with connection.pipeline() as pipe:
            pipe.delete(_QUEUED_KEY.format(project_id))
            pipe.getdel(_FULL_KEY.format(project_id))
            _, full_asked = pipe.execute()
        full = full or bool(full_asked)
        attempt = 0
        while True:
            try:
                report = retrain_project(project_id, full=full, settings=settings, registry=registry)
                break
            except LabelStudioDown as exc:
                delay = _retry_delay(exc, attempt)
                if delay is None:
                    raise
                attempt += 1
                time.sleep(delay)
    return {"project": project_id, "version": report.serving_version, "message": report.message}


class RQTrainer:
    """Queues runs in Redis: at most one queued (not yet started) run per project is the debounce.

    While Redis is unreachable, events are kept in memory and queued when it answers again.
    """

    def __init__(self, settings: Settings, *, queue_name: str = "labelloop", redeliver_every_s: float = 2.0):
        from redis import Redis
        from rq import Queue

        self.queue = Queue(queue_name, connection=Redis.from_url(settings.redis_url))
        self.redeliver_every_s = redeliver_every_s
        self._undelivered: dict[int, bool] = {}  # project -> full pull, for events Redis did not take
        self._lock = threading.Lock()
        self._redeliverer: threading.Thread | None = None

    def submit(self, project_id: int, event: str) -> None:
        full = event in FULL_PULL_EVENTS
        try:
            self._enqueue(project_id, full)
        except Exception as exc:  # redis.ConnectionError, TimeoutError...
            with self._lock:
                self._undelivered[project_id] = self._undelivered.get(project_id, False) or full
                if self._redeliverer is None or not self._redeliverer.is_alive():
                    self._redeliverer = threading.Thread(target=self._redeliver, name="labelloop-redeliver",
                                                         daemon=True)
                    self._redeliverer.start()
            logger.error("project %s: Redis is unreachable (%s); the run will be queued when it answers", project_id,
                         exc)

    def _enqueue(self, project_id: int, full: bool) -> None:
        from rq import Retry

        connection = self.queue.connection
        if full:
            connection.set(_FULL_KEY.format(project_id), 1)  # before the mark check: a starting job reads it
        if not connection.set(_QUEUED_KEY.format(project_id), 1, nx=True, ex=3600):
            return  # a run that has not started yet will see this event's annotation too
        # Retry: a job whose worker was killed is queued again when RQ cleans its registries
        self.queue.enqueue(rq_job, project_id, full, job_timeout=3600, result_ttl=86400, failure_ttl=86400,
                           retry=Retry(max=2))

    def _redeliver(self) -> None:
        while True:
            time.sleep(self.redeliver_every_s)
            with self._lock:
                pending = dict(self._undelivered)
            if not pending:
                return
            try:
                for project_id, full in pending.items():
                    self._enqueue(project_id, full)
                    with self._lock:
                        if self._undelivered.get(project_id) == full:  # else a full pull came meanwhile
                            del self._undelivered[project_id]
                    logger.info("project %s: Redis answers again; the run is queued", project_id)
            except Exception:
                continue


def make_trainer(settings: Settings, registry: ModelRegistry):
    """An RQ trainer when REDIS_URL is set and reachable, else the in-process thread."""
    if settings.redis_url:
        try:
            trainer = RQTrainer(settings)
            trainer.queue.connection.ping()
            logger.info("training through RQ at %s", settings.redis_url)
            return trainer
        except Exception as exc:
            raise LabelloopError(f"REDIS_URL={settings.redis_url} is set but Redis is unreachable: {exc}") from exc
    return Trainer(settings, registry)
