"""Label Studio XML templates that labelloop understands, loadable by name."""
from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).parent

#: template name -> what it labels
TEMPLATES = {
    "text_classification": "single-label text classification (Choices over Text)",
    "multi_label_classification": "multi-label text classification (Choices choice=\"multiple\")",
    "ner": "named entities (Labels spans over Text)",
    "llm_fine_tuning": "Supervised LLM Fine-tuning: prompt -> response TextArea",
    "llm_preference": "preference pairs: which of two answers to a prompt is better (for DPO)",
}


def load(name: str) -> str:
    """The XML of template ``name`` (one of `TEMPLATES`)."""
    if name not in TEMPLATES:
        raise KeyError(f"unknown label config {name!r}; choose one of {', '.join(TEMPLATES)}")
    return (_HERE / f"{name}.xml").read_text(encoding="utf-8")
