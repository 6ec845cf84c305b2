"""GLUE metrics against their definitions: hand-computed cases and independent formulas on random inputs."""

from __future__ import annotations

import logging
import math
import warnings

import numpy as np
import pytest

from experiments import metrics
from experiments.runner import summarize_history


def _confusion(predictions: np.ndarray, labels: np.ndarray) -> tuple[int, int, int, int]:
    p, y = predictions == 1, labels == 1
    return int(np.sum(p & y)), int(np.sum(~p & ~y)), int(np.sum(p & ~y)), int(np.sum(~p & y))


def _f1_formula(predictions: np.ndarray, labels: np.ndarray) -> float:
    tp, _, fp, fn = _confusion(predictions, labels)
    return 2 * tp / (2 * tp + fp + fn)


def _matthews_formula(predictions: np.ndarray, labels: np.ndarray) -> float:
    tp, tn, fp, fn = _confusion(predictions, labels)
    return (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Rank of each value from 1, ties sharing their mean rank: #smaller + (#equal + 1) / 2."""
    return np.array([np.sum(values < v) + (np.sum(values == v) + 1) / 2 for v in values])


def test_hand_computed_classification_cases() -> None:
    assert metrics.accuracy([0, 1, 2, 2], [0, 1, 1, 2]) == 0.75
    # predictions 1,1,1,0,0 against labels 1,1,0,1,0: tp=2, tn=1, fp=1, fn=1
    assert metrics.f1([1, 1, 1, 0, 0], [1, 1, 0, 1, 0]) == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert metrics.matthews_correlation([1, 1, 1, 0, 0], [1, 1, 0, 1, 0]) == pytest.approx(1 / 6)  # (2-1)/sqrt(36)
    assert metrics.matthews_correlation([0, 1, 0, 1], [1, 0, 1, 0]) == pytest.approx(-1.0)


def test_hand_computed_correlations() -> None:
    # deviations (-1, 0, 1) and (-1, 1, 0): covariance sum 1, norms sqrt(2) each
    assert metrics.pearson([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)
    # Spearman sees only order: a monotone curve correlates perfectly, Pearson does not
    assert metrics.spearman([1, 2, 3, 4], [1, 4, 9, 16]) == pytest.approx(1.0)
    assert metrics.pearson([1, 2, 3, 4], [1, 4, 9, 16]) < 0.99
    # a tie: ranks (1, 2.5, 2.5, 4) against (1, 2, 3, 4) give 4.5 / sqrt(4.5 * 5) = sqrt(0.9)
    assert metrics.spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(math.sqrt(0.9))


@pytest.mark.parametrize("seed", range(5))
def test_classification_metrics_match_their_formulas(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 200)
    predictions = np.where(rng.random(200) < 0.7, labels, 1 - labels)
    assert metrics.accuracy(predictions, labels) == pytest.approx(np.mean(predictions == labels))
    assert metrics.f1(predictions, labels) == pytest.approx(_f1_formula(predictions, labels))
    assert metrics.matthews_correlation(predictions, labels) == pytest.approx(_matthews_formula(predictions, labels))


@pytest.mark.parametrize("seed", range(5))
def test_correlations_match_their_formulas_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = np.round(rng.random(150) * 5, 1)  # many ties, as STS-B scores
    predictions = labels + rng.normal(0, 1.0, 150)
    predictions[:20] = np.round(predictions[:20])  # ties on the prediction side too
    assert metrics.pearson(predictions, labels) == pytest.approx(np.corrcoef(predictions, labels)[0, 1], abs=1e-12)
    ranked = np.corrcoef(_average_ranks(predictions), _average_ranks(labels))[0, 1]
    assert metrics.spearman(predictions, labels) == pytest.approx(ranked, abs=1e-12)


def test_matthews_is_zero_for_constant_predictions() -> None:
    assert metrics.matthews_correlation([1] * 5, [0, 1, 1, 0, 1]) == 0.0


@pytest.mark.parametrize("name", ["pearson", "spearman"])
@pytest.mark.parametrize("side", ["predictions", "labels"])
def test_constant_side_scores_zero_with_our_warning_only(
    name: str, side: str, caplog: pytest.LogCaptureFixture
) -> None:
    varying, constant = [0.5, 2.0, 4.5, 3.0], [2.5] * 4
    pair = (constant, varying) if side == "predictions" else (varying, constant)
    with warnings.catch_warnings(), caplog.at_level(logging.WARNING, logger="experiments.metrics"):
        warnings.simplefilter("error")  # SciPy's ConstantInputWarning would fail here
        assert metrics.METRICS[name](*pair) == 0.0
    assert [r.getMessage() for r in caplog.records] == [
        f"{name} is undefined: all {side} are 2.5; scored 0.0 (no correlation)"
    ]


def test_a_constant_epoch_does_not_win_best_epoch_selection() -> None:
    labels = [0.5, 2.0, 4.5, 3.0]
    history = [
        {"epoch": 1, "pearson": metrics.pearson([2.5] * 4, labels)},  # a collapsed regressor early in training
        {"epoch": 2, "pearson": metrics.pearson([1.0, 1.5, 4.0, 2.0], labels)},
    ]
    assert summarize_history(history, "pearson")["best_epoch"] == 2


def test_compute_metrics_checks_lengths() -> None:
    with pytest.raises(ValueError, match="3 predictions for 2 labels"):
        metrics.compute_metrics(["accuracy"], [0, 1, 1], [0, 1])
    assert metrics.compute_metrics(["accuracy", "f1"], [1, 0], [1, 1]) == {
        "accuracy": 0.5,
        "f1": pytest.approx(2 / 3),
    }
