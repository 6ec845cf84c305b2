"""GLUE metrics against scikit-learn and SciPy on fixed and random inputs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from experiments import metrics


@pytest.mark.parametrize("seed", range(5))
def test_classification_metrics_match_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 200)
    predictions = np.where(rng.random(200) < 0.7, labels, 1 - labels)
    assert metrics.accuracy(predictions, labels) == pytest.approx(accuracy_score(labels, predictions))
    assert metrics.f1(predictions, labels) == pytest.approx(f1_score(labels, predictions))
    assert metrics.matthews_correlation(predictions, labels) == pytest.approx(matthews_corrcoef(labels, predictions))


def test_three_class_accuracy() -> None:
    assert metrics.accuracy([0, 1, 2, 2], [0, 1, 1, 2]) == 0.75


def test_matthews_is_zero_for_constant_predictions() -> None:
    labels = [0, 1, 1, 0, 1]
    assert metrics.matthews_correlation([1] * 5, labels) == matthews_corrcoef(labels, [1] * 5) == 0.0


def test_f1_fixed_case() -> None:
    # tp=2, fp=1, fn=1 -> F1 = 2*2 / (2*2 + 1 + 1) = 2/3
    assert metrics.f1([1, 1, 1, 0, 0], [1, 1, 0, 1, 0]) == pytest.approx(2 / 3)


@pytest.mark.parametrize("seed", range(5))
def test_correlations_match_scipy_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = np.round(rng.random(150) * 5, 1)  # many ties, as STS-B scores
    predictions = labels + rng.normal(0, 1.0, 150)
    predictions[:20] = np.round(predictions[:20])  # ties on the prediction side too
    assert metrics.pearson(predictions, labels) == pytest.approx(pearsonr(predictions, labels)[0], abs=1e-12)
    assert metrics.spearman(predictions, labels) == pytest.approx(spearmanr(predictions, labels)[0], abs=1e-12)


def test_compute_metrics_checks_lengths() -> None:
    with pytest.raises(ValueError, match="3 predictions for 2 labels"):
        metrics.compute_metrics(["accuracy"], [0, 1, 1], [0, 1])
    assert metrics.compute_metrics(["accuracy", "f1"], [1, 0], [1, 1]) == {
        "accuracy": 0.5,
        "f1": pytest.approx(2 / 3),
    }
