"""`labelloop prelabel`: prelabel a whole project in the background, and import the predictions.

Label Studio waits at most 100 s for one /predict, so the backend drafts only a few LLM answers
inline (``LABELLOOP_LLM_MAX_INLINE``). This command does the rest, with the backend's code and
settings: every unlabelled task without a prediction of the project's current model version is
prelabelled, a chunk at a time, and each chunk is bulk-imported through the SDK as it is done.

Variants from `labelloop augment` are left alone, as the backend's refresh leaves them: their
prediction is their source's label or answer, which a draft would replace in the labelling UI.

It resumes: tasks that already carry a prediction of the version are skipped, and LLM drafts are
kept in the model directory's draft store, so an interrupted run never drafts a prompt twice for
the same model and prompt template. A task whose draft failed gets no prediction (the reason is
logged) and is tried again by the next run.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from labelloop.kinds import parse as parse_config
from labelloop.kinds.base import extra_params_dict
from labelloop.model.augment import without_variants
from labelloop.model.store import project_key

from .client import as_dict
from .filters import UNLABELLED, has_model_version, query
from .predictions import push_predictions, set_model_version, unlabelled_tasks

logger = logging.getLogger(__name__)


@dataclass
class PrelabelReport:
    project_id: int
    model_version: str
    unlabelled: int = 0
    already_current: int = 0
    imported: int = 0
    new_drafts: int = 0
    unusable: int = 0
    failed: int = 0
    #: `labelloop augment`'s variants among the unlabelled tasks, left alone
    variants: int = 0


def backend_params(client, project_id: int) -> dict:
    """The extra params of the project's ML backend in Label Studio (its per-project settings);
    raises `ProjectSettingsError` when they are not a JSON object."""
    for ml in client.ml.list(project=project_id):
        return extra_params_dict(ml.extra_params)
    return {}


def prelabel_project(client, project_id: int, *, settings, chunk_size: int = 64, progress=None) -> PrelabelReport:
    """Prelabel every unlabelled task of ``project_id`` that lacks a current prediction.

    ``settings``: the backend's `labelloop.backend.config.Settings` (model directory, encoder,
    LLM endpoint). ``progress(total) -> advance(n)``, if given, makes a progress bar.
    Raises `LabelloopError` subclasses for an unsupported config or an unusable endpoint.
    """
    from labelloop.backend.predictor import predict_tasks
    from labelloop.backend.registry import ModelRegistry

    project = client.projects.get(id=project_id)
    spec, kind = parse_config(project.label_config)
    if not kind.prelabels:
        raise kind.prelabel_unsupported()
    key = project_key(project_id, project.created_at)
    registry = ModelRegistry.from_settings(settings)
    kind.configure(registry, key, spec, backend_params(client, project_id))
    model, version = kind.serving_model(registry, key, spec)
    report = PrelabelReport(project_id, version)

    tasks, variants = without_variants(list(unlabelled_tasks(client, project_id)))
    current = {as_dict(t)["id"] for t in client.tasks.list(
        project=project_id, query=query(UNLABELLED, has_model_version(version)), include="id", page_size=1000)}
    todo = [t for t in tasks if t["id"] not in current]
    report.unlabelled, report.already_current, report.variants = len(tasks), len(current - variants), len(variants)
    advance = progress(len(todo)) if progress else (lambda n: None)
    model.progress = advance  # LLM drafts advance the bar as they complete
    for start in range(0, len(todo), chunk_size):
        chunk = todo[start:start + chunk_size]
        before = getattr(model, "drafted", 0)
        predictions = predict_tasks(chunk, spec, kind, model, version, batch_size=settings.batch_size,
                                    max_chars=settings.max_text_chars,
                                    strategy=registry.strategy_for(key, settings.strategy))
        new = getattr(model, "drafted", 0) - before
        report.new_drafts += new
        rows = [{**p, "task": t["id"]} for t, p in zip(chunk, predictions) if p]
        report.failed += len(chunk) - len(rows)
        report.unusable += sum(1 for r in rows if not r["result"])
        if rows:
            report.imported += push_predictions(client, project_id, rows)
        advance(len(chunk) - new)
    if report.imported or report.already_current:
        set_model_version(client, project_id, version)
    return report


__all__ = ["PrelabelReport", "backend_params", "prelabel_project"]
