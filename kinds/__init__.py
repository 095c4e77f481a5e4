"""Project kinds: one home per kind, looked up once.

``KINDS`` maps each spec type of `labelloop.label_config.spec` to its kind (see
`labelloop.kinds.base.ProjectKind` for the contract). Backend, training, audit and export call
`kind_for(spec)` and never branch on the kind themselves. A new kind is one module here and one
line in ``KINDS``.
"""
from __future__ import annotations

from labelloop.label_config.spec import parse_label_config

from .base import KindNotSupported, ProjectKind
from .classification import ClassificationKind
from .preference import PreferenceKind
from .responses import ResponseKind
from .spans import SpanKind

KINDS: dict[type, ProjectKind] = {kind.spec_type: kind for kind in (
    ClassificationKind(), SpanKind(), ResponseKind(), PreferenceKind())}


def kind_for(spec) -> ProjectKind:
    """The kind that handles ``spec``."""
    try:
        return KINDS[type(spec)]
    except KeyError:
        raise KindNotSupported(f"no project kind handles {type(spec).__name__}") from None


def parse(config: str):
    """``(spec, kind)`` for a label config; raises `UnsupportedLabelConfig` saying why not."""
    spec = parse_label_config(config)
    return spec, kind_for(spec)


__all__ = ["KINDS", "KindNotSupported", "ProjectKind", "kind_for", "parse"]
