"""Result and failure files in the runners' own format, with chosen scores, for testing the report.

Configs are composed by Hydra exactly as the command line would (``compose_config``), resolved the way the
runners resolve them, and written to the directory the runner would use, so the report reads what a real
sweep leaves behind; only the scores and counts are made up.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from experiments.config import compose_config
from experiments.results import write_failure, write_result
from experiments.runner import plain_config, run_directory

E2E_KEYS = ("BLEU", "NIST", "METEOR", "ROUGE_L", "CIDEr")


@functools.cache
def _plain(name: str, overrides: tuple[str, ...]) -> dict[str, Any]:
    return plain_config(compose_config(name, overrides))


def _config(family: str, results: Path, overrides: tuple[str, ...], seed: int) -> dict[str, Any]:
    import copy

    plain = copy.deepcopy(_plain(family, tuple(sorted(overrides))))
    plain["results_dir"] = str(results)
    plain["seed"] = seed
    return plain


def write_run(
    results: Path,
    overrides: tuple[str, ...],
    seed: int,
    score: float,
    *,
    family: str = "glue",
    trainable: int = 1000,
    head: int = 100,
    e2e_scores: dict[str, float] | None = None,
    steps: int | None = None,
    epoch_scores: list[float] | None = None,
    scoring_pending: bool = False,
) -> Path:
    """A finished run: ``score`` is the main metric in the runner's units (GLUE 0-1, E2E BLEU 0-1).

    ``steps``: the optimizer steps it took; ``epoch_scores``: a GLUE run's dev score after each epoch (the best
    is its score, ``score`` is then ignored); ``scoring_pending``: an E2E run trained but not scored yet.
    """
    plain = _config(family, results, overrides, seed)
    run_dir = run_directory(plain, family)
    task = plain["task"]
    result: dict[str, Any] = {
        "status": "completed",
        "family": family,
        "task": task["name"],
        "model": plain["model"]["name"],
        "model_source": plain["model"]["name_or_path"],
        "method": plain["method"]["name"],
        "seed": seed,
        "preset": plain["preset"]["name"],
        "main_metric": task["main_metric"],
        "main_metric_value": score,
        "trainable_params": trainable,
        "trainable_params_with_head": trainable + head,
        "total_params": 10**6,
        "config": plain,
    }
    if steps is not None:
        result["steps"] = steps
    if family == "e2e":
        scores = e2e_scores or {"BLEU": score, "NIST": 8.0, "METEOR": 0.45, "ROUGE_L": 0.7, "CIDEr": 2.4}
        if scoring_pending:
            scores, result["main_metric_value"], result["scoring_pending"] = None, None, True
        result["metrics"] = {"test": scores, "best": scores, "last": scores}
    else:
        history = [{"epoch": e + 1, task["main_metric"]: s} for e, s in enumerate(epoch_scores or [score])]
        if steps is not None:
            for entry in history:
                entry["step"] = steps * entry["epoch"] // len(history)
        best = max(history, key=lambda entry: entry[task["main_metric"]])
        result["main_metric_value"] = best[task["main_metric"]]
        result["metrics"] = {"per_epoch": history, "best": best, "last": history[-1], "best_epoch": best["epoch"]}
    write_result(run_dir, result)
    return run_dir


def write_failed_run(results: Path, overrides: tuple[str, ...], seed: int, message: str, family: str = "glue") -> Path:
    """A run that raised inside a multirun, recorded the way ``run_hydra_job`` records it."""
    plain = _config(family, results, overrides, seed)
    identity = {
        "family": family,
        "overrides": list(overrides),
        "task": plain["task"]["name"],
        "model": plain["model"]["name"],
        "method": plain["method"]["name"],
        "seed": seed,
        "config": plain,
    }
    return write_failure(run_directory(plain, family), identity, RuntimeError(message))


def make_incomplete_run(results: Path, overrides: tuple[str, ...], seed: int, family: str = "glue") -> Path:
    """A run directory with a checkpoint folder and no result: what a killed (or running) job leaves."""
    run_dir = run_directory(_config(family, results, overrides, seed), family)
    (run_dir / "checkpoint").mkdir(parents=True)
    return run_dir
