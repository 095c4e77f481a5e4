"""Named entities (a Labels control marking spans of a Text).

Prelabels come from three sources combined by weak supervision (`labelloop.model.spans`): a
pretrained pipeline, gazetteers (files, and every span people labelled), and, once enough
sentences are annotated, a tagger trained on the project's spans. `labelloop.label_config.regions`
reads Label Studio's span offsets (code points in 1.23, UTF-16 units in older releases) and
writes them, so everything here works on Python string indices.

A project's extra params (ML backend settings in Label Studio): ``label_map`` (``{"ORG":
"company"}``, the pretrained model's types to config labels) and ``gazetteer_ignore_case``.
Gazetteer files: ``<LABELLOOP_GAZETTEERS>/<label>.txt`` for every project, and
``<model dir>/<project>/gazetteers/<label>.txt`` (written by ``labelloop gazetteer``).
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from labelloop.label_config.regions import labelled_spans, latest_by_annotator, span_result
from labelloop.label_config.spec import SpanSpec, UnsupportedLabelConfig
from labelloop.model import ranking
from labelloop.model.errors import NotEnoughLabelsError
from labelloop.model.export.examples import examples_from_tasks
from labelloop.model.export.formats import Example, RenderOptions
from labelloop.model.spans.gazetteer import label_file, merge, read_directory
from labelloop.model.spans.prelabeler import NERConfig, SpanPrelabeler, TrainedSpans, train_spans
from labelloop.model.spans.pretrained import PretrainedNER
from labelloop.model.spans.tokens import overlapping
from labelloop.model.store import VERSION_PREFIX
from labelloop.model.text_cleaning import clean_text

from .base import ProjectKind, ProjectSettingsError, finished_annotation

logger = logging.getLogger(__name__)

PROJECT_PARAMS = ("label_map", "gazetteer_ignore_case")


@dataclass(frozen=True)
class LabelledSpans:
    """What one annotated task teaches: its text and the spans (Python indices) people marked."""

    task_id: int
    text: str
    spans: tuple[tuple[int, int, str], ...]


def project_params(extra_params: dict, spec: SpanSpec) -> dict:
    """The NER settings among a project's extra params, checked; raises `ProjectSettingsError`."""
    out = {}
    label_map = extra_params.get("label_map")
    if label_map is not None:
        if isinstance(label_map, str):
            try:
                label_map = json.loads(label_map)
            except ValueError:
                raise ProjectSettingsError("extra param label_map must be a JSON object such as "
                                           '{"ORG": "company"}') from None
        if not isinstance(label_map, dict) or len(label_map) > 1000 or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in label_map.items()):
            raise ProjectSettingsError('extra param label_map must map model types to config labels, '
                                       'such as {"ORG": "company"}')
        unknown = sorted(v for v in label_map.values() if v not in spec.labels)
        if unknown:
            raise ProjectSettingsError(f"extra param label_map maps to {', '.join(map(repr, unknown))}, which the "
                                       f"config's <Labels> does not have: {', '.join(spec.labels)}")
        out["label_map"] = label_map
    ignore_case = extra_params.get("gazetteer_ignore_case")
    if ignore_case is not None:
        if not isinstance(ignore_case, bool):
            raise ProjectSettingsError("extra param gazetteer_ignore_case must be true or false")
        out["gazetteer_ignore_case"] = ignore_case
    return out


def annotator_spans(task: dict, spec: SpanSpec, problems: list | None = None) -> dict:
    """``{annotator: spans}`` from each annotator's latest submitted annotation (one that marks
    no span says the text has none). Spans that do not fit the text go to ``problems``."""
    text = (task.get("data") or {}).get(spec.value_key)
    if not isinstance(text, str):
        return {}
    return {annotator: labelled_spans(latest.get("result"), spec, text, problems=problems)
            for annotator, latest in latest_by_annotator(task.get("annotations"), allow_empty=True).items()}


class SpanKind(ProjectKind):
    name = "ner"
    title = "NER span"
    spec_type = SpanSpec
    keep_offsets = True
    prelabels = True
    trains = True

    def __init__(self):
        self._files: dict[tuple, tuple[dict, str]] = {}
        self._files_lock = threading.Lock()

    # --- settings --------------------------------------------------------------------------------
    @staticmethod
    def _check_spec(spec: SpanSpec) -> None:
        if spec.other_controls:
            raise UnsupportedLabelConfig(
                f"the config has {1 + len(spec.other_controls)} <Labels> controls over text ({spec.from_name}, "
                f"{', '.join(spec.other_controls)}); labelloop prelabels and trains one: merge them into one "
                "<Labels>, or connect the backend to a project with one")

    def configure(self, registry, project: str, spec: SpanSpec, extra_params) -> None:
        """Check the config (one <Labels>), the extra params and that the pretrained model loads; keep the params."""
        self._check_spec(spec)
        params = project_params(extra_params, spec)
        self.pretrained(registry.ner, spec, params)  # raises PretrainedModelError (422) if it cannot load
        current = registry.store.read_settings(project)
        if current.get("ner", {}) != params:
            registry.store.write_settings(project, {**current, "ner": params})

    @staticmethod
    def pretrained(config: NERConfig, spec: SpanSpec, params: dict) -> PretrainedNER:
        return PretrainedNER(spec.labels, name=config.pretrained, label_map=params.get("label_map"))

    def file_entries(self, registry, project: str, spec: SpanSpec) -> tuple[dict, str]:
        """Gazetteer entries from files (the project's own first) and their digest; re-read only
        when a file changes."""
        dirs = [registry.store.project_dir(project) / "gazetteers"]
        if registry.ner.gazetteers:
            dirs.append(Path(registry.ner.gazetteers))
        stats = []
        for directory in dirs:
            for label in spec.labels:
                path = label_file(directory, label)
                try:
                    st = path.stat()
                    stats.append((str(path), st.st_mtime_ns, st.st_size))
                except OSError:
                    continue
        key = (tuple(stats), spec.labels)
        with self._files_lock:
            if key not in self._files:
                entries = merge(*(read_directory(d, spec.labels) for d in dirs))
                digest = hashlib.sha1(json.dumps(sorted(entries.items())).encode()).hexdigest()[:8]
                if len(self._files) >= 256:  # files of projects long gone, or long changed
                    self._files.clear()
                self._files[key] = (entries, digest)
            return self._files[key]

    def _params(self, registry, project: str) -> dict:
        return registry.store.read_settings(project).get("ner", {})

    # --- prelabel --------------------------------------------------------------------------------
    def _version(self, registry, project: str, spec: SpanSpec) -> tuple[str, str | None, dict, dict]:
        params = self._params(registry, project)
        entries, gazetteer_digest = self.file_entries(registry, project, spec)
        trained = registry.trained_version(project, spec, self)
        digest = hashlib.sha1(json.dumps([registry.ner.pretrained, list(spec.labels), params, gazetteer_digest,
                                          registry.model_name, registry.ner.aggregation]).encode()).hexdigest()[:8]
        version = f"{VERSION_PREFIX}{trained}-{digest}" if trained else f"{VERSION_PREFIX}ner-zeroshot-{digest}"
        return version, trained, params, entries

    def model_version(self, registry, project: str, spec: SpanSpec) -> str:
        return self._version(registry, project, spec)[0]

    def serving_model(self, registry, project: str, spec: SpanSpec):
        self._check_spec(spec)
        version, trained, params, entries = self._version(registry, project, spec)

        def build():
            stored = registry.store.load(project, trained, loader=self.load_model) if trained else None
            return SpanPrelabeler(spec.labels, pretrained=self.pretrained(registry.ner, spec, params),
                                  file_entries=entries, ignore_case=bool(params.get("gazetteer_ignore_case")),
                                  trained=stored, model_name=registry.model_name)

        return registry.cached(("ner", project, version), build, family=("ner", project)), version

    def predict(self, texts: Sequence[str], spec: SpanSpec, model: SpanPrelabeler, *, strategy: str, limit=None):
        """Values ``(text, spans)``; the score is the least confident span's (see
        `labelloop.model.spans.prelabeler.Prelabel`), or random for the ``random`` strategy."""
        prelabels = model.predict(list(texts))
        scores = [p.score for p in prelabels]
        if strategy == "random":
            scores = ranking.score(np.full((len(texts), 2), 0.5), strategy="random")
        return [(text, p.spans) for text, p in zip(texts, prelabels)], scores

    def regions(self, spec: SpanSpec, value) -> list[dict]:
        text, spans = value
        return [span_result(spec, text, s[0], s[1], s[2], region_id=f"labelloop-{i}",
                            score=s[3] if len(s) > 3 else None) for i, s in enumerate(spans)]

    def stored_model_fits(self, meta: dict, spec: SpanSpec) -> str | None:
        if meta.get("kind") != "ner":
            return "not an NER model"
        if set(meta.get("labels", ())) != set(spec.labels):
            return f"trained for labels {meta.get('labels')}, the config has {list(spec.labels)}"
        return None

    def load_model(self, path, meta: dict):
        return TrainedSpans.load(path, meta)

    # --- learn -----------------------------------------------------------------------------------
    def training_item(self, task: dict, spec: SpanSpec) -> LabelledSpans | None:
        """The spans of the task's latest submitted annotation (none marked: the text has no
        entity); spans outside the text are left out with a log line."""
        annotation = finished_annotation(task, allow_empty=True)
        text = (task.get("data") or {}).get(spec.value_key)
        if annotation is None:
            return None
        if not isinstance(text, str) or not text.strip():
            logger.warning("task %s: annotated, but its %r field holds no text; not used for training",
                           task.get("id"), spec.value_key)
            return None
        problems: list[str] = []
        spans = labelled_spans(annotation.get("result"), spec, text, problems=problems)
        for problem in problems:
            logger.warning("task %s annotation %s: %s; left out", task.get("id"), annotation.get("id"), problem)
        return LabelledSpans(int(task["id"]), clean_text(text), tuple(spans))

    def fit(self, items: Sequence[LabelledSpans], spec: SpanSpec, *, model_name: str, registry=None, project=None,
            **_):
        config = registry.ner if registry is not None else NERConfig.from_env()
        params = self._params(registry, project) if registry is not None else {}
        entries = self.file_entries(registry, project, spec)[0] if registry is not None else {}
        return train_spans([i.text for i in items], [i.spans for i in items], spec.labels,
                           pretrained=self.pretrained(config, spec, params), file_entries=entries,
                           ignore_case=bool(params.get("gazetteer_ignore_case")), config=config, model_name=model_name)

    # --- audit -----------------------------------------------------------------------------------
    def audit(self, tasks: dict, spec: SpanSpec, *, embed, n_folds: int = 5, progress=None, judge=None):
        """`labelloop.model.spans.label_issues.audit_spans` over the annotated tasks."""
        from labelloop.model.spans.label_issues import audit_spans

        ids, texts, annotators, problems, empty = [], [], [], [], []
        for task in tasks.values():
            found: list[str] = []
            by_annotator = annotator_spans(task, spec, found)
            problems += [f"task {task['id']}: {p}" for p in found]
            if not by_annotator:
                continue
            text = (task.get("data") or {}).get(spec.value_key)
            if not isinstance(text, str) or not text.strip():
                empty.append(task["id"])
                continue
            ids.append(task["id"])
            texts.append(clean_text(text))
            annotators.append(by_annotator)
        if not ids:
            raise NotEnoughLabelsError("the project has no finished annotations to audit")
        config = NERConfig.from_env()  # the command's environment: the same LABELLOOP_NER_* as the backend's
        result = audit_spans(ids, texts, annotators, spec.labels, pretrained=self.pretrained(config, spec, {}),
                             file_entries=read_directory(config.gazetteers, spec.labels), n_folds=n_folds,
                             progress=progress)
        if problems:
            result.messages.insert(0, f"{len(problems)} spans do not fit their text and were left out, e.g. "
                                      + "; ".join(problems[:3]))
        nested = [i for i, spans in zip(ids, annotators) if any(overlapping(s) for s in spans.values())]
        if nested:
            result.messages.append(f"{len(nested)} tasks hold overlapping or nested spans (e.g. task {nested[0]}): "
                                   "the audit and the tagger use the longest; the JSON-spans export keeps them all")
        result.findings += [{"task_id": int(t), "issues": ["empty_text"], "quality": 0.0, "given": None,
                             "suggested": None, "n_annotators": None, "agreement": None,
                             "reason": "annotated, but the text is empty"} for t in empty]
        result.findings.sort(key=lambda f: f["quality"])
        return result

    # --- export ----------------------------------------------------------------------------------
    def example(self, task: dict, spec: SpanSpec, *, audit_label=None, problems: list | None = None):
        """The text, verbatim, and the spans of the latest annotation (the audit's token-level
        consensus where it is current and several people annotated)."""
        annotation = finished_annotation(task, allow_empty=True)
        if annotation is None:
            return None, None
        text = (task.get("data") or {}).get(spec.value_key)
        if not isinstance(text, str):
            return None, "no text"
        spans = labelled_spans(annotation.get("result"), spec, text, problems=problems)
        if audit_label is not None and isinstance(audit_label, list) and len(annotator_spans(task, spec)) > 1:
            spans = [tuple(s) for s in audit_label if isinstance(s, list) and len(s) == 3]
        return Example(task["id"], text, spans=tuple(spans)), None

    def examples(self, tasks: dict, spec: SpanSpec, *, audit: dict | None = None, exclude_flagged: bool = False):
        """As the base, plus messages for spans that do not fit their text and nested spans."""
        problems: dict = {}
        nested: list = []

        def example_of(task, audit_label):
            found: list[str] = []
            example, reason = self.example(task, spec, audit_label=audit_label, problems=found)
            if found:
                problems[task["id"]] = found
            if example is not None and overlapping(example.spans):
                nested.append(task["id"])
            return example, reason

        examples, skipped, messages = examples_from_tasks(tasks, example_of, audit=audit,
                                                          exclude_flagged=exclude_flagged)
        if problems:
            first = next(iter(problems.items()))
            messages.append(f"{sum(map(len, problems.values()))} spans in {len(problems)} tasks do not fit their "
                            f"text and are left out (task {first[0]}: {first[1][0]})")
        if nested:
            messages.append(f"{len(nested)} examples hold overlapping or nested spans (tasks {nested[:5]}): JSON "
                            "spans keep them all; CoNLL holds one tag per token and keeps the longest")
        return examples, skipped, messages

    def render_options(self, spec: SpanSpec, *, system, instruction) -> RenderOptions:
        return RenderOptions(self.name, tuple(spec.labels), False, system, instruction)
