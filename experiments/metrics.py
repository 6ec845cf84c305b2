"""GLUE metrics as GLUE defines them, computed offline (values in [0, 1] / [-1, 1]; reports scale x100)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["METRICS", "accuracy", "compute_metrics", "f1", "matthews_correlation", "pearson", "spearman"]


def accuracy(predictions: Sequence[int], labels: Sequence[int]) -> float:
    """Fraction of exact matches."""
    p, y = np.asarray(predictions), np.asarray(labels)
    return float((p == y).mean())


def f1(predictions: Sequence[int], labels: Sequence[int]) -> float:
    """F1 of the positive class (label 1), as GLUE reports for MRPC and QQP."""
    p, y = np.asarray(predictions) == 1, np.asarray(labels) == 1
    tp = float(np.sum(p & y))
    denominator = float(np.sum(p) + np.sum(y))
    return 2.0 * tp / denominator if denominator else 0.0


def matthews_correlation(predictions: Sequence[int], labels: Sequence[int]) -> float:
    """Matthews correlation of a binary prediction (CoLA); 0 when a marginal is constant."""
    p, y = np.asarray(predictions) == 1, np.asarray(labels) == 1
    tp, tn = float(np.sum(p & y)), float(np.sum(~p & ~y))
    fp, fn = float(np.sum(p & ~y)), float(np.sum(~p & y))
    denominator = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return float((tp * tn - fp * fn) / denominator) if denominator else 0.0


def pearson(predictions: Sequence[float], labels: Sequence[float]) -> float:
    """Pearson correlation (STS-B); 0 when either side is constant."""
    p, y = np.asarray(predictions, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    p, y = p - p.mean(), y - y.mean()
    denominator = np.sqrt(np.sum(p * p) * np.sum(y * y))
    return float(np.sum(p * y) / denominator) if denominator else 0.0


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (as Spearman's definition requires)."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), dtype=np.float64)
    sorted_values = values[order]
    start = 0
    while start < len(values):
        end = start
        while end + 1 < len(values) and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2.0 + 1.0
        start = end + 1
    return ranks


def spearman(predictions: Sequence[float], labels: Sequence[float]) -> float:
    """Spearman rank correlation (STS-B): Pearson of the tie-averaged ranks."""
    p = _average_ranks(np.asarray(predictions, dtype=np.float64))
    y = _average_ranks(np.asarray(labels, dtype=np.float64))
    return pearson(p, y)


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
