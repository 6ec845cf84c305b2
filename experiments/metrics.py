"""GLUE metrics from scikit-learn and SciPy, the libraries Hugging Face ``evaluate``'s GLUE metric uses.

Values are in [0, 1] or [-1, 1]; reports scale them by 100.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

__all__ = ["METRICS", "accuracy", "compute_metrics", "f1", "matthews_correlation", "pearson", "spearman"]

logger = logging.getLogger(__name__)


def accuracy(predictions: Sequence[int], labels: Sequence[int]) -> float:
    """Fraction of exact matches (any number of classes)."""
    return float(accuracy_score(labels, predictions))


def f1(predictions: Sequence[int], labels: Sequence[int]) -> float:
    """F1 of the positive class (label 1), as GLUE reports for MRPC and QQP.

    With no positive label nor prediction F1 is undefined: scikit-learn warns and gives 0.0.
    """
    return float(f1_score(labels, predictions, pos_label=1, average="binary"))


def matthews_correlation(predictions: Sequence[int], labels: Sequence[int]) -> float:
    """Matthews correlation (CoLA); 0.0 when a marginal is constant, scikit-learn's and GLUE's convention."""
    return float(matthews_corrcoef(labels, predictions))


def _correlation(name: str, statistic: Callable, predictions: Sequence[float], labels: Sequence[float]) -> float:
    """``statistic`` of the pair, or 0.0 with a logged warning when one side is constant.

    A correlation with a constant is undefined (SciPy returns NaN). A NaN dev score would silently corrupt
    best-epoch selection, which compares scores with ``max`` and ``>`` (a NaN first epoch wins, a NaN
    epoch is never beaten), so such an epoch scores 0.0 instead: the value of an uninformative predictor,
    the convention ``matthews_correlation`` already follows, and the value earlier runs recorded. The
    warning says when that happened, so the number is never taken for a measured one.
    """
    p, y = np.asarray(predictions, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    for side, values in (("predictions", p), ("labels", y)):
        if values.size and np.all(values == values[0]):
            logger.warning("%s is undefined: all %s are %g; scored 0.0 (no correlation)", name, side, values[0])
            return 0.0
    return float(statistic(p, y).statistic)


def pearson(predictions: Sequence[float], labels: Sequence[float]) -> float:
    """Pearson correlation (STS-B); 0.0 with a warning when either side is constant (see ``_correlation``)."""
    return _correlation("pearson", pearsonr, predictions, labels)


def spearman(predictions: Sequence[float], labels: Sequence[float]) -> float:
    """Spearman rank correlation with tie-averaged ranks (STS-B); 0.0 with a warning for a constant side."""
    return _correlation("spearman", spearmanr, predictions, labels)


METRICS: dict[str, Callable[[Sequence, Sequence], float]] = {
    "accuracy": accuracy,
    "f1": f1,
    "matthews_correlation": matthews_correlation,
    "pearson": pearson,
    "spearman": spearman,
}


def compute_metrics(names: Sequence[str], predictions: Sequence, labels: Sequence) -> dict[str, float]:
    """Every named metric of one split."""
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions for {len(labels)} labels")
    return {name: METRICS[name](predictions, labels) for name in names}
