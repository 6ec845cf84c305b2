"""Training curves for the report: per configuration, each seed's logged training loss (``train_log.jsonl``) and
its per-epoch evaluation metric (the history in ``result.json``), both against the optimizer step; and per task,
the dev metric after each epoch of every chosen configuration (the Table 2 rows), the median over seeds with the
seeds' range, so a reader sees whether the budget reached a plateau.

Runs that logged neither (older runs, hand-made result files) are skipped, and so is a configuration none of
whose seeds logged anything.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from experiments.methods import display
from experiments.reporting.aggregate import GROUP_KEYS
from experiments.reporting.runs import GLUE_SCALE
from experiments.step_log import STEP_LOG_FILE, read_step_log

__all__ = ["CurveSet", "DevCurve", "SeedCurve", "TaskCurves", "dev_curves_by_task", "training_curves"]

# The per-epoch value a family's curve shows when its main metric is only measured at the end (E2E's BLEU).
_EPOCH_FALLBACK = "valid_loss"


@dataclass(frozen=True)
class SeedCurve:
    """One run's curves: logged (step, training loss) points and per-epoch (step, metric) points."""

    seed: int
    loss: tuple[tuple[int, float], ...]
    metric: tuple[tuple[int, float], ...]


@dataclass(frozen=True)
class CurveSet:
    """The curves of one configuration (same task, settings and starting point), one per seed that logged."""

    family: str
    model: str
    task: str
    label: str  # the configuration as the report's tables name it
    metric: str  # the per-epoch key plotted
    scale: float  # display units: GLUE metrics x100, as the tables
    seeds: tuple[SeedCurve, ...]
    key: str  # a short stable id, for the figure's file name


def _epoch_metric(history: Sequence[Mapping[str, Any]], main_metric: str | None) -> str | None:
    for key in (main_metric, _EPOCH_FALLBACK):
        if key and any(isinstance(entry.get(key), int | float) for entry in history):
            return key
    return None


def _history(result_path: Path) -> list[dict[str, Any]]:
    """A run's per-epoch history from its result file; empty where it has none or it cannot be read."""
    try:
        history = json.loads(result_path.read_text(encoding="utf-8"))["metrics"]["per_epoch"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return history if isinstance(history, list) else []


def _run_logs(result_path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A run's step records and per-epoch history; empty where it has none or they cannot be read."""
    try:
        records = read_step_log(result_path.parent / STEP_LOG_FILE)
    except ValueError:  # a line torn by a kill
        records = []
    return records, _history(result_path)


def _seed_curve(
    seed: int, records: Sequence[Mapping[str, Any]], history: Sequence[Mapping[str, Any]], metric: str | None
) -> SeedCurve | None:
    """A run's curves, or None when it logged neither steps nor the per-epoch metric."""
    last_step_of_epoch: dict[int, int] = {}
    for record in records:  # an entry without its step (older results) sits at its epoch's last logged step
        last_step_of_epoch[record["epoch"]] = max(record["step"], last_step_of_epoch.get(record["epoch"], 0))
    loss = tuple((record["step"], record["loss"]) for record in records)
    points = []
    for entry in history:
        step = entry.get("step") or last_step_of_epoch.get(entry.get("epoch"))
        if metric and step and isinstance(entry.get(metric), int | float):
            points.append((step, entry[metric]))
    return SeedCurve(seed, loss, tuple(points)) if loss or points else None


def training_curves(runs: pd.DataFrame) -> list[CurveSet]:
    """The curves of every completed configuration that has some, grouped as the report groups runs."""
    completed = runs[(runs["status"] == "completed") & runs["variant_key"].notna()] if len(runs) else runs
    sets = []
    for (family, model, task, variant_key, init_from), group in completed.groupby(GROUP_KEYS, sort=True):
        logs = [(int(seed), *_run_logs(Path(path))) for path, seed in zip(group["path"], group["seed"], strict=True)]
        main = group["main_metric"].dropna()
        metric = _epoch_metric(
            [entry for *_, history in logs for entry in history], main.iloc[0] if len(main) else None
        )
        seeds = [curve for log in logs if (curve := _seed_curve(*log, metric)) is not None]
        if not seeds:
            continue
        digest = hashlib.sha256(f"{variant_key}|{init_from}".encode()).hexdigest()[:8]
        sets.append(
            CurveSet(
                family=family,
                model=model,
                task=task,
                label=group["variant"].iloc[0] + ("" if init_from == "pretrained" else f"; from {init_from}"),
                metric=metric or "",
                scale=GLUE_SCALE if family == "glue" and metric != _EPOCH_FALLBACK else 1.0,
                seeds=tuple(sorted(seeds, key=lambda curve: curve.seed)),
                key=f"{model}_{task}_{digest}",
            )
        )
    return sets


@dataclass(frozen=True)
class DevCurve:
    """One configuration's dev metric after each epoch: the median over the seeds that reached the epoch, and the
    lowest and highest of them (display units)."""

    label: str
    method: str
    epochs: tuple[int, ...]
    median: tuple[float, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    n_seeds: int
    budget: int | None  # train.epochs
    start: str = ""  # "" from the pretrained model, else the run it started from


@dataclass(frozen=True)
class TaskCurves:
    """The dev curves of one (model, task): one per configuration chosen (a method's Table 2 row and budget)."""

    family: str
    model: str
    task: str
    metric: str
    scale: float
    curves: tuple[DevCurve, ...]


def _epoch_points(history: Sequence[Mapping[str, Any]], metric: str) -> dict[int, float]:
    return {
        int(entry["epoch"]): float(entry[metric])
        for entry in history
        if isinstance(entry.get("epoch"), int | float) and isinstance(entry.get(metric), int | float)
    }


def dev_curves_by_task(runs: pd.DataFrame, chosen: Callable[[pd.Series], bool]) -> list[TaskCurves]:
    """Per (family, model, task), the per-epoch dev metric of each configuration whose runs ``chosen`` accepts
    (configurations as the report groups them, so two budgets or starting points are two curves); only
    configurations with two or more evaluated epochs are drawn."""
    if not len(runs):
        return []
    completed = runs[(runs["status"] == "completed") & runs["variant_key"].notna()]
    completed = completed[[bool(chosen(row)) for _, row in completed.iterrows()]] if len(completed) else completed
    out = []
    for (family, model, task), of_task in completed.groupby(["family", "model", "task"], sort=True):
        main = of_task["main_metric"].dropna()
        metric = main.iloc[0] if len(main) else None
        if not metric:
            continue
        scale = GLUE_SCALE if family == "glue" else 1.0
        curves = []
        for (_, init_from), group in of_task.groupby(["variant_key", "init_from"], sort=True):
            per_seed = [_epoch_points(_history(Path(path)), metric) for path in group["path"]]
            per_seed = [points for points in per_seed if points]
            epochs = sorted({epoch for points in per_seed for epoch in points})
            if len(epochs) < 2:
                continue
            values = [[points[e] * scale for points in per_seed if e in points] for e in epochs]
            budget = group["epochs"].dropna()
            start = "" if init_from == "pretrained" else str(init_from)
            curves.append(
                DevCurve(
                    label=group["variant"].iloc[0] + (f"; from {start}" if start else ""),
                    method=str(group["method"].iloc[0]),
                    epochs=tuple(epochs),
                    median=tuple(statistics.median(v) for v in values),
                    low=tuple(min(v) for v in values),
                    high=tuple(max(v) for v in values),
                    n_seeds=len(per_seed),
                    budget=int(budget.iloc[0]) if len(budget) else None,
                    start=start,
                )
            )
        if curves:
            curves.sort(key=lambda c: (display(c.method).order, c.label))
            out.append(TaskCurves(family, model, task, metric, scale, tuple(curves)))
    return out
