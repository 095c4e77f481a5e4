"""Plot pieces that several reports draw (the audit's, the evaluation's)."""
from __future__ import annotations

from typing import Sequence

import numpy as np


def confusion_heatmap(ax, matrix, labels: Sequence[str], *, xlabel: str, ylabel: str) -> None:
    """Counts ``(k, k)`` as a blue heatmap on ``ax``: rows ``ylabel``, columns ``xlabel``, both in
    ``labels`` order, each cell's count written on it (white on the darker half)."""
    matrix = np.asarray(matrix)
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    for (row, column), value in np.ndenumerate(matrix):
        ax.text(column, row, str(value), ha="center", va="center",
                color="white" if value > matrix.max() / 2 else "black")
