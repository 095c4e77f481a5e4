"""Specific exceptions of the pure-ML layer; callers catch these, never a bare Exception."""


class LabelloopError(Exception):
    """Base class for errors labelloop reports to its user with a clear message."""


class NotEnoughLabelsError(LabelloopError, ValueError):
    """There is not enough labelled data to fit or evaluate a model (none, or one class only)."""


class ModelNotFoundError(LabelloopError, FileNotFoundError):
    """No stored model version exists where one was asked for."""
