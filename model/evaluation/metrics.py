"""Metrics of a fine-tuned model's answers against the references of a test split.

Pure functions over lists of strings. Each metric that cannot run here (its data is not offline,
its model is missing) is reported as ``{"unavailable": reason}`` rather than failing the rest.

- generation: BLEU and chrF (sacrebleu), ROUGE-L (rouge-score), BERTScore (bert-score on the
  offline MiniLM by default), METEOR (nltk, when its WordNet data is installed);
- classification: accuracy, macro-F1, per-label precision/recall/F1 and the confusion matrix;
- NER: entity-level precision/recall/F1 (seqeval) over the tokens CoNLL export uses.
"""
from __future__ import annotations

import json
import re
from typing import Sequence

import numpy as np

from ..errors import LabelloopError

#: the label a classification answer gets when it names none of the project's labels
NO_LABEL = "(no label)"


class EvaluationError(LabelloopError):
    """Answers and references that cannot be compared (different counts, nothing to score)."""


def _check_pairs(references: Sequence, predictions: Sequence) -> None:
    if len(references) != len(predictions):
        raise EvaluationError(f"{len(predictions)} answers for {len(references)} references: they must pair up "
                              "line by line")
    if not len(references):
        raise EvaluationError("the test split holds no examples")


def meteor_unavailable() -> str | None:
    """Why METEOR cannot run offline here, or None when nltk finds its WordNet data."""
    try:
        import nltk

        nltk.data.find("corpora/wordnet")
    except LookupError:
        return ("METEOR needs nltk's WordNet data, which is not installed and cannot be downloaded offline; "
                "install it with `python -m nltk.downloader wordnet` where a network is available")
    return None


def generation_metrics(references: Sequence[str], predictions: Sequence[str], *,
                       bertscore_model: str | None = "default", bertscore_layers: int | None = None,
                       bertscore_batch_size: int = 32) -> dict:
    """Corpus BLEU and chrF, mean ROUGE-L F, mean BERTScore F1, mean METEOR; each in [0, 100]
    (BLEU, chrF) or [0, 1]. Also ``per_example``: ``{"rouge_l": (n,), "bertscore_f1": (n,)}``.

    ``bertscore_model``: ``"default"`` (the offline MiniLM), a local path or Hugging Face name;
    None skips BERTScore. ``bertscore_layers``: the layer BERTScore reads (default: the last).
    """
    import sacrebleu
    from rouge_score import rouge_scorer

    _check_pairs(references, predictions)
    refs, hyps = [str(r) for r in references], [str(p) for p in predictions]
    out: dict = {"examples": len(refs)}
    out["bleu"] = float(sacrebleu.corpus_bleu(hyps, [refs]).score)
    out["chrf"] = float(sacrebleu.corpus_chrf(hyps, [refs]).score)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    rouge = [scorer.score(r, h)["rougeL"].fmeasure for r, h in zip(refs, hyps)]
    out["rouge_l"] = float(np.mean(rouge))
    per_example = {"rouge_l": [float(v) for v in rouge]}
    if bertscore_model is None:
        out["bertscore_f1"] = {"unavailable": "skipped (no BERTScore model)"}
    else:
        try:
            f1 = bertscore_f1(refs, hyps, model=bertscore_model, layers=bertscore_layers,
                              batch_size=bertscore_batch_size)
            out["bertscore_f1"] = float(np.mean(f1))
            per_example["bertscore_f1"] = [float(v) for v in f1]
        except (OSError, ValueError) as exc:
            out["bertscore_f1"] = {"unavailable": f"BERTScore model {bertscore_model!r} cannot be loaded: {exc}"}
    reason = meteor_unavailable()
    if reason:
        out["meteor"] = {"unavailable": reason}
    else:
        from nltk.translate.meteor_score import meteor_score

        out["meteor"] = float(np.mean([meteor_score([r.split()], h.split()) for r, h in zip(refs, hyps)]))
    out["per_example"] = per_example
    return out


def bertscore_f1(references: Sequence[str], predictions: Sequence[str], *, model: str = "default",
                 layers: int | None = None, batch_size: int = 32) -> np.ndarray:
    """BERTScore F1 per pair ``(n,)``, greedy token matching on ``model``'s hidden states (no
    baseline rescaling, no idf). ``"default"`` is the offline MiniLM, so this runs offline."""
    import bert_score
    from transformers import AutoConfig

    from ..embeddings import resolve_model_path

    path = resolve_model_path(model)
    if layers is None:
        layers = int(AutoConfig.from_pretrained(path).num_hidden_layers)
    # empty strings make BERTScore warn and score 0; the same happens here without the noise
    empty = np.array([not r.strip() or not p.strip() for r, p in zip(references, predictions)])
    f1 = np.zeros(len(references))
    keep = np.flatnonzero(~empty)
    if len(keep):
        _, _, scores = bert_score.score([predictions[i] for i in keep], [references[i] for i in keep],
                                        model_type=path, num_layers=layers, batch_size=batch_size, device="cpu"
                                        if not _cuda() else None, verbose=False)
        f1[keep] = scores.numpy()
    return f1


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def parse_label(answer: str, labels: Sequence[str]) -> str:
    """The project label an answer names: the whole answer (case, spaces and end punctuation set
    aside), else the label named first in it (longest on ties), else `NO_LABEL`."""
    def norm(text):
        return re.sub(r"\s+", " ", str(text)).strip().strip(".!\"'`*").strip().casefold()

    wanted = norm(answer)
    by_norm = {norm(label): label for label in labels}
    if wanted in by_norm:
        return by_norm[wanted]
    best = None
    for key, label in by_norm.items():
        match = re.search(rf"(?<!\w){re.escape(key)}(?!\w)", wanted) if key else None
        if match and (best is None or (match.start(), -len(key)) < (best[0], -len(best[1]))):
            best = (match.start(), key, label)
    return best[2] if best else NO_LABEL


def classification_metrics(references: Sequence[str], predictions: Sequence[str], *,
                           labels: Sequence[str] | None = None) -> dict:
    """Accuracy, macro-F1 over the project's labels, per-label precision/recall/F1/support and
    the confusion matrix (rows: reference, columns: prediction, ``labels`` then `NO_LABEL`)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    _check_pairs(references, predictions)
    labels = list(labels) if labels else sorted(set(references))
    columns = labels + ([NO_LABEL] if NO_LABEL in predictions and NO_LABEL not in labels else [])
    p, r, f, s = precision_recall_fscore_support(references, predictions, labels=labels, zero_division=0)
    return {
        "examples": len(references),
        "accuracy": float(accuracy_score(references, predictions)),
        "macro_f1": float(f1_score(references, predictions, labels=labels, average="macro", zero_division=0)),
        "per_label": {label: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                              "support": int(s[i])} for i, label in enumerate(labels)},
        "unparsed_answers": int(sum(pred == NO_LABEL for pred in predictions)),
        "confusion": {"labels": columns,
                      "matrix": confusion_matrix(references, predictions, labels=columns).tolist()},
    }


def parse_spans(answer: str, text: str) -> list[tuple[int, int, str]]:
    """``(start, end, label)`` spans from an answer holding a JSON list of ``{"text", "label",
    "start", "end"}`` objects (the export's NER answer). Offsets that do not point at the span's
    text are replaced by the text's first free occurrence; spans not found, or not JSON, are dropped."""
    match = re.search(r"\[.*\]", answer or "", flags=re.S)
    try:
        items = json.loads(match.group()) if match else []
    except json.JSONDecodeError:
        items = []
    spans, taken = [], set()
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict) or not isinstance(item.get("label"), str):
            continue
        surface, start, end = item.get("text"), item.get("start"), item.get("end")
        if isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(text) and (
                surface is None or text[start:end] == surface):
            span = (start, end, item["label"])
        elif isinstance(surface, str) and surface:
            found = [m.start() for m in re.finditer(re.escape(surface), text)]
            free = [s for s in found if (s, s + len(surface)) not in taken]
            if not free:
                continue
            span = (free[0], free[0] + len(surface), item["label"])
        else:
            continue
        taken.add(span[:2])
        spans.append(span)
    return spans


def ner_metrics(texts: Sequence[str], references: Sequence[Sequence[tuple]], predictions: Sequence[Sequence[tuple]]
                ) -> dict:
    """Entity-level precision, recall and F1 (seqeval, strict IOB2), overall and per label, over
    the tokens and outermost spans that the CoNLL export writes."""
    from ..export.formats import conll_block

    _check_pairs(references, predictions)
    if len(texts) != len(references):
        raise EvaluationError(f"{len(texts)} texts for {len(references)} references")

    def tags(text, spans):
        return [line.rsplit("\t", 1)[1] for line in conll_block(text, spans).splitlines() if line]

    return tag_metrics([tags(t, s) for t, s in zip(texts, references)],
                       [tags(t, s) for t, s in zip(texts, predictions)])


def tag_metrics(y_true: Sequence[Sequence[str]], y_pred: Sequence[Sequence[str]]) -> dict:
    """`ner_metrics` over BIO tags: one list of tags per sentence, the same lengths in both."""
    from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
    from seqeval.scheme import IOB2

    _check_pairs(y_true, y_pred)
    report = classification_report(y_true, y_pred, mode="strict", scheme=IOB2, output_dict=True, zero_division=0)
    per_label = {label: {"precision": float(v["precision"]), "recall": float(v["recall"]), "f1": float(v["f1-score"]),
                         "support": int(v["support"])}
                 for label, v in report.items() if not label.endswith(" avg")}
    return {"examples": len(y_true),
            "entity_precision": float(precision_score(y_true, y_pred, mode="strict", scheme=IOB2, zero_division=0)),
            "entity_recall": float(recall_score(y_true, y_pred, mode="strict", scheme=IOB2, zero_division=0)),
            "entity_f1": float(f1_score(y_true, y_pred, mode="strict", scheme=IOB2, zero_division=0)),
            "per_label": per_label}
