"""`labelloop augment`: synthetic variants of a project's annotated examples, as new tasks.

Each variant is a new Label Studio task: the source task's data with its text replaced, plus
``synthetic_of`` (the source task id) and ``synthetic_method``. It comes with a prediction that
copies the source's label (classification: the annotators' consensus; LLM projects: the written
response), model version ``labelloop-augment``; never an annotation, so a person accepts or fixes
it like any prelabel. The saved view "Synthetic variants to review" lists those not reviewed yet.
The backend leaves their predictions alone when it re-predicts, and `labelloop export` keeps each
variant in its source's split (``--no-synthetic`` leaves them out).

Running it again with the same method skips sources that already have variants of it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from labelloop.kinds import parse as parse_config
from labelloop.label_config.spec import UnsupportedLabelConfig
from labelloop.model.augment import METHODS, augly_variants, clean_paraphrase, distinct, paraphrase_messages, \
    synthetic_source
from labelloop.model.errors import LabelloopError, NotEnoughLabelsError

from .audit import ORDER_KEY
from .filters import UNLABELLED, has_model_version, save_view
from .predictions import push_predictions
from .projects import import_tasks
from .sync import ProjectSnapshot

MODEL_VERSION = "labelloop-augment"
VIEW_TITLE = "Synthetic variants to review"
#: project kinds whose label survives a rewrite of the text (span offsets and preference pairs do not)
SUPPORTED_KINDS = ("classification", "llm")


class AugmentError(LabelloopError):
    """The project or the method cannot be augmented."""


@dataclass
class AugmentReport:
    project_id: int
    method: str
    sources: int = 0
    created: int = 0
    already_done: int = 0
    without_variant: list = field(default_factory=list)
    failed: list = field(default_factory=list)
    view_id: int | None = None


def _paraphrases(texts: list[str], n: int, progress) -> list[list[str]]:
    from dataclasses import replace

    from labelloop.model.responses.llm import Drafter, LLMConfig

    config = LLMConfig.from_env()
    config = replace(config, temperature=max(config.temperature, 0.9), samples=1, logprobs=False)
    drafter = Drafter(config)
    drafter.check(timeout=10.0)
    # a few spare tries per text: a rewrite equal to the text, or to another, is not kept
    tries = n + 1
    drafts = drafter.draft_many([paraphrase_messages(t) for t in texts for _ in range(tries)], progress=progress)
    out = []
    for i, text in enumerate(texts):
        mine = drafts[i * tries:(i + 1) * tries]
        out.append(distinct([clean_paraphrase(d.text, text) for d in mine], text, n))
    return out


def run_augment(client, project_id: int, *, method: str, n: int = 1, limit: int | None = None, seed: int = 0,
                data_dir: Path = Path("labelloop-data"), progress: Callable | None = None) -> AugmentReport:
    """Make up to ``n`` variants of each annotated task (the first ``limit`` sources, if set).
    ``progress(step, total)`` returns a callback that advances that step."""
    if method not in METHODS:
        raise AugmentError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if not 1 <= n <= 20:
        raise AugmentError("--n must be between 1 and 20 variants per example")
    project = client.projects.get(id=project_id)
    try:
        spec, kind = parse_config(project.label_config)
    except UnsupportedLabelConfig as exc:
        raise AugmentError(f"project {project_id}: {exc}") from None
    if kind.name not in SUPPORTED_KINDS:
        raise AugmentError(f"labelloop augment supports text classification and LLM response projects, not "
                           f"{kind.title}: a rewritten text would not keep its {kind.title} label (span offsets "
                           "move, preference pairs compare two fixed answers)")
    snapshot = ProjectSnapshot.in_data_dir(data_dir, project_id)
    snapshot.sync(client, progress=progress("pulling tasks", None) if progress else None)
    tasks = snapshot.tasks()
    done = {(source, t["data"].get("synthetic_method")) for t in tasks.values()
            if (source := synthetic_source(t.get("data"))) is not None}
    report = AugmentReport(project_id, method)
    sources = []
    for task_id, task in sorted(tasks.items()):
        data = task.get("data") or {}
        if synthetic_source(data) is not None:
            continue  # no variants of variants
        example, _ = kind.example(task, spec)
        text = data.get(spec.text_key)
        if example is None or not isinstance(text, str) or not text.strip():
            continue
        if (task_id, method) in done:
            report.already_done += 1
            continue
        sources.append((task_id, data, text, example))
        if limit and len(sources) >= limit:
            break
    if not sources and not report.already_done:
        raise NotEnoughLabelsError(f"project {project_id} has no annotated tasks to make variants of")
    report.sources = len(sources)
    if not sources:
        return report

    texts = [text for _, _, text, _ in sources]
    advance = progress(f"{method} variants", len(texts) * (n + 1 if method == "paraphrase" else 1)) if progress \
        else None
    if method == "paraphrase":
        variants = _paraphrases(texts, n, advance)
    else:
        variants = []
        for text in texts:
            variants.append(augly_variants(text, method=method, n=n, seed=seed))
            if advance:
                advance(1)

    new_data, answers = [], []
    for (task_id, data, _, example), found in zip(sources, variants):
        if not found:
            report.without_variant.append(task_id)
        for variant in found:
            # the source's place in the audit's review queue is not the variant's
            kept = {key: value for key, value in data.items() if key != ORDER_KEY}
            new_data.append({**kept, spec.text_key: variant, "synthetic_of": task_id, "synthetic_method": method})
            answers.append(list(example.labels) if kind.name == "classification" else (example.response, None))
    if not new_data:
        return report
    before = set(tasks)
    import_tasks(client, project_id, new_data)
    snapshot.sync(client)
    created = {(t["data"].get("synthetic_of"), t["data"].get("synthetic_method"), t["data"].get(spec.text_key)): tid
               for tid, t in snapshot.tasks().items() if tid not in before}
    predictions = []
    for data, answer in zip(new_data, answers):
        task_id = created.get((data["synthetic_of"], method, data[spec.text_key]))
        if task_id is None:
            report.failed.append(data["synthetic_of"])
            continue
        predictions.append({"task": task_id, "result": kind.regions(spec, answer), "score": 1.0,
                            "model_version": MODEL_VERSION})
    report.created = push_predictions(client, project_id, predictions,
                                      progress=progress("prelabels", len(predictions)) if progress else None)
    report.view_id = save_view(client, project_id, VIEW_TITLE, [UNLABELLED, has_model_version(MODEL_VERSION)],
                               ["tasks:id"], columns=("id", "predictions_results"))
    return report


__all__ = ["AugmentError", "AugmentReport", "METHODS", "MODEL_VERSION", "VIEW_TITLE", "run_augment"]
