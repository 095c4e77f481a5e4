"""What serves an NER project (`SpanPrelabeler`) and what training stores for it (`TrainedSpans`).

Before any annotation, the pretrained pipeline and the file gazetteers vote (skweak's majority
voter). `train_spans` adds what the project's annotations teach: a gazetteer of every labelled
span, a tagger (`labelloop.model.spans.tagger`) once there are ``min_sentences`` annotated
sentences, each source's measured precision, and the aggregator fitted on out-of-fold source
spans (`labelloop.model.spans.weak_supervision`).
"""
from __future__ import annotations

import json
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from labelloop.model.env import env_number
from labelloop.model.errors import NotEnoughLabelsError

from . import weak_supervision as ws
from .gazetteer import Gazetteer, entries_from_spans, merge, out_of_fold_spans
from .pretrained import DEFAULT_PIPELINE, PretrainedNER
from .tagger import SpanTagger, out_of_fold_proba, tagged_spans, word_features
from .tokens import make_docs, token_spans, trim, word_labels


@dataclass(frozen=True)
class NERConfig:
    """NER settings from the environment (``LABELLOOP_NER_*``, ``LABELLOOP_GAZETTEERS``)."""

    #: spaCy pipeline name or directory, or a Hugging Face token-classification directory
    pretrained: str = DEFAULT_PIPELINE
    #: a directory of ``<label>.txt`` files, one entry per line, for every NER project
    gazetteers: str = ""
    #: "vote" (skweak's majority voter, each source weighed by its measured precision) or "hmm"
    #: (skweak's HMM); vote scored higher on WNUT and keeps span scores graded (bench/ner.py)
    aggregation: str = "vote"
    #: annotated sentences before a tagger is trained
    min_sentences: int = 20
    #: folds for the out-of-fold source spans that fit the aggregator
    folds: int = 3

    @classmethod
    def from_env(cls) -> "NERConfig":
        aggregation = os.environ.get("LABELLOOP_NER_AGGREGATION", cls.aggregation).strip().lower()
        if aggregation not in ws.AGGREGATIONS:
            raise ValueError(f"LABELLOOP_NER_AGGREGATION={aggregation!r}: choose one of {', '.join(ws.AGGREGATIONS)}")
        return cls(pretrained=os.environ.get("LABELLOOP_NER_MODEL") or DEFAULT_PIPELINE,
                   gazetteers=os.environ.get("LABELLOOP_GAZETTEERS", ""), aggregation=aggregation,
                   min_sentences=env_number("LABELLOOP_NER_MIN_SENTENCES", cls.min_sentences, int),
                   folds=max(2, env_number("LABELLOOP_NER_FOLDS", cls.folds, int)))


@dataclass
class Prelabel:
    """One text's prelabel: character ``spans`` ``(start, end, label, score)`` and the task
    ``score`` (lower = ask first): the least confident span, or, with no span, one minus the
    highest probability any word had of being an entity. A span's confidence is the aggregated
    vote for its label, averaged with the tagger's probability of it once a tagger exists."""

    spans: list
    score: float


@dataclass
class TrainedSpans:
    """What a project's annotations teach; stored as a model version."""

    labels: tuple[str, ...]
    learned: dict[str, list[str]]
    tagger: SpanTagger | None = None
    aggregator: object = None  # a fitted skweak HMM, or None for the weighted voter
    weights: dict[str, float] = field(default_factory=dict)
    report: dict = field(default_factory=dict)
    sources: tuple[str, ...] = ()
    n_sentences: int = 0
    #: which weighting serves ("corroborated", "alone without tagger", "hmm"...), and each vote weighting's
    #: out-of-fold F1
    weighting: str = ""
    weighting_f1: dict = field(default_factory=dict)

    def voter(self):
        return self.aggregator if self.aggregator is not None else ws.majority_voter(self.labels, self.weights)

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        (directory / "learned_gazetteer.json").write_text(json.dumps(self.learned, ensure_ascii=False), encoding="utf-8")
        if self.tagger is not None:
            self.tagger.save(directory)
        if self.aggregator is not None:
            with open(directory / "aggregator.pkl", "wb") as f:
                pickle.dump(self.aggregator, f)
        meta = {"kind": "ner", "labels": list(self.labels), "weights": self.weights, "report": self.report,
                "sources": list(self.sources), "n_sentences": self.n_sentences, "tagger": self.tagger is not None,
                "aggregation": "hmm" if self.aggregator is not None else "vote", "weighting": self.weighting,
                "weighting_f1": self.weighting_f1,
                "learned_entries": sum(len(v) for v in self.learned.values())}
        (directory / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path, meta: dict) -> "TrainedSpans":
        directory = Path(directory)
        aggregator = None
        if (directory / "aggregator.pkl").exists():
            with open(directory / "aggregator.pkl", "rb") as f:
                aggregator = pickle.load(f)  # written by this backend into its own model dir
        return cls(tuple(meta["labels"]), json.loads((directory / "learned_gazetteer.json").read_text(encoding="utf-8")),
                   SpanTagger.load(directory) if meta.get("tagger") else None, aggregator, meta.get("weights", {}),
                   meta.get("report", {}), tuple(meta.get("sources", ())), int(meta.get("n_sentences", 0)),
                   meta.get("weighting", ""), meta.get("weighting_f1", {}))


class SpanPrelabeler:
    """The sources of one project and their aggregation; `predict` turns texts into `Prelabel`s.

    ``file_entries``: gazetteer entries from files; ``trained``: a `TrainedSpans` or None."""

    def __init__(self, labels: Sequence[str], *, pretrained: PretrainedNER | None, file_entries: dict | None = None,
                 ignore_case: bool = False, trained: TrainedSpans | None = None, model_name: str = "default"):
        self.labels = tuple(labels)
        self.pretrained = pretrained
        self.trained = trained
        self.model_name = model_name
        learned = trained.learned if trained is not None else {}
        self.gazetteer = Gazetteer(merge(file_entries or {}, learned), ignore_case=ignore_case)

    def source_spans(self, texts: Sequence[str], docs: Sequence, features=None) -> tuple[dict, list | None]:
        """``({source: per-Doc token spans}, tagger probabilities or None)``."""
        sources = {}
        if self.pretrained is not None:
            sources["pretrained"] = [token_spans(doc, spans) for doc, spans in zip(docs, self.pretrained.spans(texts))]
        if len(self.gazetteer):
            sources["gazetteer"] = self.gazetteer.spans(docs)
        proba = None
        if self.trained is not None and self.trained.tagger is not None:
            if features is None:
                features = word_features(docs, model_name=self.model_name)
            proba = self.trained.tagger.predict_proba(features)
            sources["tagger"] = tagged_spans(docs, proba, self.trained.tagger.classes_)
        if self.trained is not None and self.trained.sources:  # the aggregator knows these sources only
            sources = {name: spans for name, spans in sources.items() if name in self.trained.sources}
        return sources, proba

    def predict(self, texts: Sequence[str], *, features: Sequence[np.ndarray] | None = None) -> list[Prelabel]:
        """One `Prelabel` per text. ``features``: `word_features` of the texts, if already computed."""
        if not texts:
            return []
        docs = make_docs(texts)
        sources, proba = self.source_spans(texts, docs, features)
        ws.annotate(docs, sources)
        voter = self.trained.voter() if self.trained is not None else ws.majority_voter(self.labels, ws.PRIOR_WEIGHTS)
        out = []
        for i, (spans, entity) in enumerate(ws.aggregate(voter, docs, self.labels)):
            spans = [(*edges, *s[2:]) for s in spans if s[2] in self.labels
                     and (edges := trim(docs[i], s[0], s[1])) is not None]
            if proba is not None:  # the vote is coarse (a few source weights): the tagger grades it
                spans = [(*s[:3], (s[3] + self._tagger_confidence(docs[i], proba[i], s)) / 2) for s in spans]
            if spans:
                score = min(s[3] for s in spans)
            else:
                closest = float(entity.max()) if len(entity) else 0.0
                if proba is not None and len(proba[i]):
                    closest = max(closest, float(proba[i][:, 1:].sum(axis=1).max()))
                score = 1.0 - closest
            out.append(Prelabel(spans, float(np.clip(score, 0.0, 1.0))))
        return out

    def _tagger_confidence(self, doc, proba: np.ndarray, span) -> float:
        """The tagger's mean probability of the span's label over its words."""
        words = doc.char_span(span[0], span[1], alignment_mode="expand")
        k = self.trained.tagger.classes_.index(span[2])
        return float(proba[words.start:words.end, k].mean()) if words is not None and len(words) else 0.0


def train_spans(texts: Sequence[str], spans: Sequence[Sequence[tuple]], labels: Sequence[str], *,
                pretrained: PretrainedNER | None, file_entries: dict | None = None, ignore_case: bool = False,
                config: NERConfig = NERConfig(), model_name: str = "default", seed: int = 0,
                features: Sequence[np.ndarray] | None = None) -> TrainedSpans:
    """Learn from annotated ``texts`` and their character ``spans`` ``(start, end, label)``.
    ``features``: `word_features` of the texts, if already computed.

    Raises `NotEnoughLabelsError` when no annotation holds a span of a config label."""
    labels = tuple(labels)
    spans = [[s for s in text_spans if s[2] in labels] for text_spans in spans]
    if not any(spans):
        raise NotEnoughLabelsError("no annotated span uses a label of the config yet")
    docs = make_docs(texts)
    gold = [token_spans(doc, s) for doc, s in zip(docs, spans)]
    n = len(docs)

    # out-of-fold source spans: no source is scored on sentences it learned from
    oof: dict[str, list] = {}
    if pretrained is not None:
        oof["pretrained"] = [token_spans(doc, s) for doc, s in zip(docs, pretrained.spans(texts))]
    oof["gazetteer"] = out_of_fold_spans(texts, spans, docs, file_entries=file_entries, ignore_case=ignore_case,
                                         n_folds=config.folds, seed=seed)
    classes = ("O",) + labels
    tagger = None
    if n >= max(config.min_sentences, 2):
        if features is None:
            features = word_features(docs, model_name=model_name)
        y = [word_labels(doc, s, classes) for doc, s in zip(docs, spans)]
        oof["tagger"] = tagged_spans(docs, out_of_fold_proba(features, y, labels, n_folds=config.folds, seed=seed),
                                     classes)
        try:
            tagger = SpanTagger(labels, model_name=model_name).fit(features, y)
        except NotEnoughLabelsError:
            del oof["tagger"]

    report = ws.source_report(docs, gold, oof, labels)
    ws.annotate(docs, oof)

    def combined(voter) -> dict:
        spans_ = [token_spans(doc, s) for doc, (s, _) in zip(docs, ws.aggregate(voter, docs, labels))]
        return ws.source_report(docs, gold, {ws.COMBINED: spans_}, labels)[ws.COMBINED]

    # each weighting's combination, with every source and without each one in turn (a young
    # tagger can cost more precision than it adds recall), scored out-of-fold: the best serves
    candidates = {}
    for name, weights in ws.precision_weights(report).items():
        for left_out in (None, *weights):
            if left_out is not None and len(weights) < 2:
                continue
            w = {k: (0.0 if k == left_out else v) for k, v in weights.items()}
            key = name if left_out is None else f"{name} without {left_out}"
            candidates[key] = (w, combined(ws.majority_voter(labels, w)))
    weighting = max(candidates, key=lambda name: (candidates[name][1]["all"]["f1"], name == "corroborated"))
    weights, report[ws.COMBINED] = candidates[weighting]
    aggregator = None
    if config.aggregation == "hmm":
        try:
            aggregator = ws.fit_hmm(docs, labels)
            weighting = "hmm"
            report[ws.COMBINED] = combined(aggregator)
        except ValueError:
            aggregator = None  # no source found anything: the weighted voter serves
    return TrainedSpans(labels, entries_from_spans(texts, spans), tagger, aggregator, weights, report, tuple(oof), n,
                        weighting, {name: c["all"]["f1"] for name, (_, c) in candidates.items()})
