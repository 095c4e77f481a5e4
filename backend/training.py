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
share one trainer (`labelloop worker`); without it, an in-process thread does the work.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from labelloop.kinds import parse as parse_config
from labelloop.label_config.spec import UnsupportedLabelConfig
from labelloop.model.errors import LabelloopError, NotEnoughLabelsError
from labelloop.model.store import ModelStore, project_key

from .config import Settings
from .predictor import predict_tasks
from .registry import ModelRegistry

logger = logging.getLogger(__name__)

TRAIN_EVENTS = frozenset({"ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED", "START_TRAINING"})
# deletions do not bump a task's updated_at, and a manual start should see everything
FULL_PULL_EVENTS = frozenset({"ANNOTATIONS_DELETED", "START_TRAINING"})


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
    short; the model itself is always stored first.
    """
    from labelloop.scripts.client import connect
    from labelloop.scripts.predictions import replace_unlabelled_predictions, unlabelled_tasks

    report = RunReport(project_id)
    t0 = time.perf_counter()
    try:
        client = client or connect(settings.label_studio_url, settings.label_studio_api_key)
        project = client.projects.get(id=project_id)
    except Exception as exc:  # the SDK raises ApiError, httpx and pydantic errors
        report.message = f"project {project_id}: cannot read it from Label Studio ({exc}); nothing trained"
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
    tasks = list(unlabelled_tasks(client, project_id, with_predictions=not kind.trains))
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
        should_stop=should_stop)
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

    snapshot = ProjectSnapshot(store.project_dir(key), project_id, annotated_only=True)
    fetched = snapshot.sync(client, full=full).fetched
    items = [item for task in snapshot.tasks().values() if (item := kind.training_item(task, spec)) is not None]
    # items come from the current config each run: labels removed from it are left out (and logged)
    report.n_labels = len(items)
    report.seconds["pull"] = time.perf_counter() - started

    t1 = time.perf_counter()
    try:
        model = kind.fit(items, spec, model_name=settings.model_name, finetune_min_labels=settings.finetune_min_labels,
                         finetune_epochs=settings.finetune_epochs, registry=registry, project=key)
        report.trained_version = store.save(key, model, meta={"n_labels": len(items), "trained_at": time.time()})
        report.seconds["fit"] = time.perf_counter() - t1
        logger.info("project %s: model %s serves now (%d labels, fit in %.2f s; pulled %d %s tasks in %.2f s)",
                    project_id, report.trained_version, len(items), report.seconds["fit"], fetched,
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
    """An in-process worker thread that debounces events per project and runs one at a time."""

    def __init__(self, settings: Settings, registry: ModelRegistry, *, debounce_s: float | None = None):
        self.settings = settings
        self.registry = registry
        self.debounce_s = settings.debounce_s if debounce_s is None else debounce_s
        self._pending: dict[int, tuple[float, bool]] = {}  # project -> (run after, full pull)
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._running: int | None = None
        self.reports: list[RunReport] = []

    def submit(self, project_id: int, event: str) -> None:
        with self._cond:
            _, full = self._pending.get(project_id, (0.0, False))
            self._pending[project_id] = (time.monotonic() + self.debounce_s, full or event in FULL_PULL_EVENTS)
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
                report = retrain_project(project_id, full=full, settings=self.settings, registry=self.registry,
                                         should_stop=lambda pid=project_id: self.has_pending(pid))
                self.reports = (self.reports + [report])[-50:]
            except Exception:  # a failed run must never kill the worker or the server
                logger.exception("project %s: training run failed; the previous model keeps serving", project_id)
            finally:
                with self._cond:
                    self._running = None


def rq_job(project_id: int, full: bool) -> dict:
    """The RQ entry point: settings come from the worker's environment."""
    settings = Settings.from_env()
    registry = ModelRegistry.from_settings(settings)
    report = retrain_project(project_id, full=full, settings=settings, registry=registry)
    return {"project": project_id, "version": report.serving_version, "message": report.message}


class RQTrainer:
    """Queues runs in Redis; one queued run per project at a time is the debounce."""

    def __init__(self, settings: Settings, *, queue_name: str = "labelloop"):
        from redis import Redis
        from rq import Queue

        self.queue = Queue(queue_name, connection=Redis.from_url(settings.redis_url))

    def submit(self, project_id: int, event: str) -> None:
        from rq.job import Job, JobStatus
        from rq.exceptions import NoSuchJobError

        job_id = f"labelloop-train-{project_id}"
        try:
            job = Job.fetch(job_id, connection=self.queue.connection)
            if job.get_status() in (JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.SCHEDULED):
                return  # a run that has not started yet will see this event's annotation too
        except NoSuchJobError:
            pass
        self.queue.enqueue(rq_job, project_id, event in FULL_PULL_EVENTS, job_id=job_id,
                           job_timeout=3600, result_ttl=86400, failure_ttl=86400)


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
