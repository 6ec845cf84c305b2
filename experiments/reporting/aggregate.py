"""Pool the runs of one configuration (same task, settings and starting point; any seed) into the numbers a
table cell shows: the median over seeds (the paper's statistic), the min and max, and how many seeds
finished, failed or are still incomplete."""

from __future__ import annotations

import math

import pandas as pd

from experiments.reporting.runs import COLUMNS, E2E_SCALES

__all__ = ["GROUP_KEYS", "aggregate", "cell_from", "format_cell", "format_count", "seed_scores"]

GROUP_KEYS = ["family", "model", "task", "variant_key", "init_from"]
_PER_SEED = ("status", "seed", "score", *E2E_SCALES, "steps", "best_epoch", "scoring_pending", "error", "path")
_FIRST = [c for c in COLUMNS if c not in (*GROUP_KEYS, *_PER_SEED)]


def _stats(values: pd.Series, prefix: str) -> dict[str, float]:
    finite = values.dropna().astype(float)
    if finite.empty:
        return {f"{prefix}median": math.nan, f"{prefix}min": math.nan, f"{prefix}max": math.nan}
    return {f"{prefix}median": finite.median(), f"{prefix}min": finite.min(), f"{prefix}max": finite.max()}


def _scored(runs: pd.DataFrame) -> pd.DataFrame:
    """The seeds that count in a cell: completed, with a main score."""
    return runs[(runs["status"] == "completed") & runs["score"].notna()]


def seed_scores(runs: pd.DataFrame, group: pd.Series) -> list[float]:
    """The per-seed scores behind one row of :func:`aggregate` (those its median, min, max and n are of), by seed."""
    mask = pd.Series(True, index=runs.index)
    for key in GROUP_KEYS:
        mask &= runs[key] == group[key]
    return _scored(runs[mask]).sort_values("seed")["score"].astype(float).tolist()


def aggregate(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration and task: median/min/max of the main score (and of each E2E metric, of the
    optimizer steps and of the best epoch), ``spread`` = half the min-max range, ``n`` scored seeds, ``n_failed``,
    ``n_incomplete``, ``n_pending`` (finished, test scores not computed yet), ``epochs`` (and ``epochs_max``).

    Runs whose configuration is unknown (a failure before the config resolved, an unreadable file, an
    incomplete run with no finished sibling) have no ``variant_key`` and are left to the caller to list.
    """
    placed = runs[runs["variant_key"].notna()]
    rows = []
    for keys, group in placed.groupby(GROUP_KEYS, sort=True, dropna=False):
        completed = group[group["status"] == "completed"]
        scored = _scored(group)
        pending = completed[completed["score"].isna() & completed["scoring_pending"].fillna(False).astype(bool)]
        row = dict(zip(GROUP_KEYS, keys, strict=True))
        row |= {column: group[column].dropna().iloc[0] if group[column].notna().any() else None for column in _FIRST}
        row |= _stats(scored["score"], "")
        row["spread"] = (row["max"] - row["min"]) / 2
        for metric in E2E_SCALES:
            row |= _stats(completed[metric], f"{metric}_")
        row["n"] = len(scored)
        row["n_pending"] = len(pending)
        row["n_failed"] = int((group["status"] == "failed").sum()) + len(completed) - len(scored) - len(pending)
        row |= _stats(completed["steps"], "steps_") | _stats(completed["best_epoch"], "best_epoch_")
        epochs = group["epochs"].dropna()
        row["epochs"], row["epochs_max"] = (epochs.min(), epochs.max()) if len(epochs) else (None, None)
        row["n_incomplete"] = int((group["status"] == "incomplete").sum())
        row["seeds"] = " ".join(str(s) for s in sorted(scored["seed"].dropna().astype(int)))
        row["failed_seeds"] = " ".join(
            str(s) for s in sorted(group.loc[group["status"] == "failed", "seed"].dropna().astype(int))
        )
        for column in ("trainable_params", "trainable_params_with_head"):
            counts = completed[column].dropna().astype(int)
            row[column] = int(counts.min()) if len(counts) else None
            row[f"{column}_max"] = int(counts.max()) if len(counts) else None
        rows.append(row)
    return pd.DataFrame(rows)


def format_count(low: float | None, high: float | None = None) -> str:
    """A parameter count the way the paper prints it (0.3M, 125.0M), exact below 100k; a range if it varies."""

    def one(value: float) -> str:
        if value >= 1e5:
            return f"{value / 1e6:.3g}M" if value < 1e8 else f"{value / 1e6:.1f}M"
        return f"{int(value):,}"

    if low is None or (isinstance(low, float) and math.isnan(low)):
        return "—"
    if high is None or high == low or (isinstance(high, float) and math.isnan(high)):
        return one(low)
    return f"{one(low)}–{one(high)}"


def format_cell(
    median: float,
    low: float,
    high: float,
    n: int,
    n_failed: int = 0,
    n_incomplete: int = 0,
    digits: int = 1,
    repeated_seeds: str = "",
    n_pending: int = 0,
) -> str:
    """``median (min–max; n=k)`` (``median (n=1)`` for one seed), naming failed, incomplete, scoring-pending and
    repeated seeds; "missing" with no run."""
    notes = [f"{n_failed} failed"] if n_failed else []
    notes += [f"{n_incomplete} incomplete"] if n_incomplete else []
    notes += [f"{n_pending} scoring pending"] if n_pending else []
    notes += [f"seed {repeated_seeds} repeated"] if repeated_seeds else []
    if n == 0 or median is None or (isinstance(median, float) and math.isnan(median)):
        return ", ".join(notes) if notes else "missing"
    seeds_range = [f"{low:.{digits}f}–{high:.{digits}f}"] if n > 1 else []
    return f"{median:.{digits}f} ({'; '.join([*seeds_range, f'n={n}', *notes])})"


def cell_from(row: pd.Series | None, prefix: str = "", digits: int = 1) -> str:
    """The formatted cell of one aggregated row (``prefix`` picks an E2E metric): ``median (min–max; n=k)``, or
    "missing"."""
    if row is None:
        return "missing"
    median, low, high = row[f"{prefix}median"], row[f"{prefix}min"], row[f"{prefix}max"]
    repeated = row.get("repeated_seeds") or ""
    pending = row.get("n_pending")
    pending = 0 if pending is None or (isinstance(pending, float) and math.isnan(pending)) else int(pending)
    counts = int(row["n"]), int(row["n_failed"]), int(row["n_incomplete"])
    return format_cell(median, low, high, *counts, digits, repeated, pending)
