"""Settings read from environment variables: a number, or an error that names the variable."""
from __future__ import annotations

import os


def env_number(name: str, default, kind=int):
    """``kind(os.environ[name])``, or ``default`` when it is unset or empty; ValueError naming
    ``name`` when it does not parse."""
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        return kind(raw)
    except ValueError:
        expected = "an integer" if kind is int else "a number"
        raise ValueError(f"{name} must be {expected}, got {raw!r}") from None
