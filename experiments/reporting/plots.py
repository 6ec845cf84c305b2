"""The report's figures (PNG, matplotlib's Agg canvas; no pyplot, so no global state): score vs rank, score vs
trainable parameters, and the target-matrix comparison, with one panel per (model, task) and every point the
median over seeds with a bar from the min to the max seed; and per configuration its training curves, one line
per seed."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from experiments.methods import display
from experiments.paper_numbers import TABLE5_BUDGETS, TABLE18
from experiments.reporting.curves import CurveSet, TaskCurves
from experiments.reporting.tables import TASK_NAMES, paper_model, rank_series, target_budget

__all__ = ["plot_dev_curves", "plot_params", "plot_rank", "plot_targets", "plot_training_curves"]

_LINE_STYLES = ("-", "--", ":", "-.")
_METRIC_NAMES = {
    "accuracy": "accuracy",
    "matthews_correlation": "Matthews corr.",
    "pearson": "Pearson r",
    "spearman": "Spearman ρ",
    "f1": "F1",
    "BLEU": "BLEU",
}


def _y_label(family: str, metric: str | None) -> str:
    name = _METRIC_NAMES.get(metric or "", metric or "score")
    where = "dev" if family == "glue" else "test"
    return f"{where} {name} ×100 (median over seeds)"


def _panels(count: int, width: float = 5.0, height: float = 3.6) -> tuple[Figure, list]:
    columns = min(count, 3)
    rows = math.ceil(count / columns)
    figure = Figure(figsize=(width * columns, height * rows + 0.9), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False).ravel().tolist()
    for unused in axes[count:]:
        unused.set_visible(False)
    return figure, axes[:count]


def _error(medians: pd.Series, lows: pd.Series, highs: pd.Series) -> list[list[float]]:
    return [(medians - lows).clip(lower=0).tolist(), (highs - medians).clip(lower=0).tolist()]


def _title(model: str, task: str) -> str:
    return f"{TASK_NAMES.get(task, task)} · {model}"


def _models_line(groups: pd.DataFrame) -> str:
    return "models: " + ", ".join(sorted(groups["model"].dropna().unique()))


def _suptitle(figure: Figure, text: str) -> None:
    """A figure title wrapped to the figure's width, so one narrow panel does not cut it off."""
    figure.suptitle("\n".join(textwrap.wrap(text, int(figure.get_figwidth() * 11))))


def _count(value: float, _position: object = None) -> str:
    if value >= 1e6:
        return f"{value / 1e6:g}M"
    return f"{value / 1e3:g}k" if value >= 1e3 else f"{value:g}"


def _panel_order(panels: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    order = list(TASK_NAMES)
    return sorted(panels, key=lambda p: (p[0], p[1], order.index(p[2]) if p[2] in order else len(order), p[2]))


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110, metadata={"Software": None})  # no version stamp in the file
    return path


def plot_rank(groups: pd.DataFrame, path: Path) -> Path | None:
    """Score vs LoRA rank r (log2 axis), one line per configuration run at several ranks; the paper's Table 18
    BLEU for GPT-2 M E2E panels. None when no configuration ran at two ranks."""
    series = [(key, s[s["n"] > 0]) for key, s in rank_series(groups)]
    series = [(key, s) for key, s in series if not s.empty]
    if not series:
        return None
    panels = _panel_order(list(dict.fromkeys((family, model, task) for (family, model, task, *_), _ in series)))
    figure, axes = _panels(len(panels))
    for ax, (family, model, task) in zip(axes, panels, strict=True):
        ranks: set[int] = set()
        metric = None
        for (f, m, t, _, init), members in series:
            if (f, m, t) != (family, model, task):
                continue
            label = members.iloc[0]["rank_series"] + ("" if init == "pretrained" else f"; from {init}")
            x = members["r"].astype(int)
            ax.errorbar(
                x,
                members["median"],
                yerr=_error(members["median"], members["min"], members["max"]),
                marker="o",
                capsize=3,
                label=label,
            )
            ranks.update(x.tolist())
            metric = metric or members.iloc[0]["main_metric"]
        if family == "e2e" and paper_model(family, model, None) == "gpt2-medium":
            paper = sorted(TABLE18)
            ax.plot(
                paper,
                [TABLE18[r]["BLEU"].value for r in paper],
                "k--",
                marker="x",
                label="paper: GPT-2 M LoRA (Table 18)",
            )
            ranks.update(paper)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(ranks), [str(r) for r in sorted(ranks)])
        ax.set_xlabel("LoRA rank r (log scale)")
        ax.set_ylabel(_y_label(family, metric))
        ax.set_title(_title(model, task))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small", loc="best")
    shown = pd.concat([s for _, s in series])
    _suptitle(figure, f"Score vs LoRA rank r; error bars: min–max over seeds; {_models_line(shown)}")
    return _save(figure, path)


def plot_params(groups: pd.DataFrame, path: Path) -> Path | None:
    """Score vs trainable parameters (task head excluded, log axis), coloured by method: one point per
    configuration. None when no configuration has both a score and a count."""
    usable = groups[(groups["n"] > 0) & groups["trainable_params"].notna()]
    usable = usable[usable["trainable_params"] > 0]
    if usable.empty:
        return None
    panels = _panel_order(list(dict.fromkeys(zip(usable["family"], usable["model"], usable["task"], strict=True))))
    figure, axes = _panels(len(panels))
    for ax, (family, model, task) in zip(axes, panels, strict=True):
        panel = usable[(usable["family"] == family) & (usable["model"] == model) & (usable["task"] == task)]
        for method, members in panel.groupby("method", sort=False):
            shown = display(method)
            members = members.sort_values("trainable_params")
            ax.errorbar(
                members["trainable_params"].astype(float),
                members["median"],
                yerr=_error(members["median"], members["min"], members["max"]),
                fmt=shown.marker,
                color=shown.colour,
                capsize=3,
                label=f"{shown.label} ({len(members)} config.)",
            )
        ax.set_xscale("log")
        decades = math.log10(panel["trainable_params"].max() / panel["trainable_params"].min())
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0,) if decades > 2 else (1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(_count))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("trainable parameters, task head excluded (log scale)")
        ax.set_ylabel(_y_label(family, panel.iloc[0]["main_metric"]))
        ax.set_title(_title(model, task))
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize="x-small", loc="best")
    _suptitle(
        figure, f"Score vs trainable parameters, by method; error bars: min–max over seeds; {_models_line(usable)}"
    )
    return _save(figure, path)


def plot_targets(groups: pd.DataFrame, path: Path) -> Path | None:
    """Score per adapted-matrix set at the Table 5 budget (r x matrices = 8), one marker series per
    configuration. None when fewer than two budget pairs ran for any (model, task)."""
    lora = groups[groups["r"].notna() & (groups["n"] > 0)]
    lora = lora.assign(_budget=[target_budget(t, r) for t, r in zip(lora["targets"], lora["r"], strict=True)])
    lora = lora[lora["_budget"].notna()]
    panels = [
        key
        for key, members in lora.groupby(["family", "model", "task"], sort=True)
        if members["_budget"].nunique() >= 2
    ]
    if not panels:
        return None
    panels = _panel_order(panels)
    shown = pd.concat([lora[(lora["family"] == f) & (lora["model"] == m) & (lora["task"] == t)] for f, m, t in panels])
    figure, axes = _panels(len(panels), width=6.0)
    for ax, (family, model, task) in zip(axes, panels, strict=True):
        panel = lora[(lora["family"] == family) & (lora["model"] == model) & (lora["task"] == task)]
        present = set(panel["_budget"])
        order = [b for b in TABLE5_BUDGETS if b in present] + sorted(present - set(TABLE5_BUDGETS))
        # one series per configuration, start and epoch budget (the label leaves the budget out)
        series = list(panel.groupby(["target_series", "init_from", "epochs"], sort=False, dropna=False))
        budgets = panel["epochs"].nunique(dropna=False)
        step = 0.5 / len(series)
        for index, ((label, init, epochs), members) in enumerate(series):
            by_budget = dict(zip(members["_budget"], members.itertuples(), strict=True))
            xs = [i + (index - (len(series) - 1) / 2) * step for i, b in enumerate(order) if b in by_budget]
            rows = [by_budget[b] for b in order if b in by_budget]
            medians = pd.Series([r.median for r in rows])
            yerr = _error(medians, pd.Series([r.min for r in rows]), pd.Series([r.max for r in rows]))
            suffix = "" if init == "pretrained" else f"; from {init}"
            suffix += f"; {'?' if pd.isna(epochs) else f'{epochs:g}'} ep" if budgets > 1 else ""
            ax.errorbar(xs, medians, yerr=yerr, fmt="o", capsize=3, label=label + suffix)
        ax.set_xticks(range(len(order)), [_tick(b) for b in order], fontsize="small")
        ax.set_xlim(-0.5, len(order) - 0.5)
        ax.set_xlabel("adapted matrices (rank r); r × matrices = 8 in every column")
        ax.set_ylabel(_y_label(family, panel.iloc[0]["main_metric"]))
        ax.set_title(_title(model, task))
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize="x-small", loc="best")
    title = "Which matrices to adapt at a fixed budget (paper Table 5); error bars: min–max over seeds"
    _suptitle(figure, f"{title}; {_models_line(shown)}")
    return _save(figure, path)


def _tick(budget: tuple[Sequence[str], int]) -> str:
    names = list(budget[0])
    lines = ["+".join(names[i : i + 2]) for i in range(0, len(names), 2)]
    return "+\n".join(lines) + f"\nr={budget[1]}"


def _curve_metric_label(curves: CurveSet) -> str:
    if curves.metric == "valid_loss":
        return "validation loss per token"
    name = _METRIC_NAMES.get(curves.metric, curves.metric)
    return f"dev {name}" + (f" ×{curves.scale:g}" if curves.scale != 1 else "")


def plot_training_curves(curves: CurveSet, path: Path) -> Path:
    """Training loss as logged (left) and the per-epoch evaluation metric (right) against the optimizer step,
    one colour per seed, so a diverging seed or an overfitting epoch shows at a glance."""
    figure, (loss_axis, metric_axis) = _panels(2, height=3.2)
    for index, seed in enumerate(curves.seeds):
        colour = f"C{index % 10}"
        if seed.loss:
            steps, values = zip(*seed.loss, strict=True)
            loss_axis.plot(steps, values, color=colour, linewidth=1, label=f"seed {seed.seed}")
        if seed.metric:
            steps, values = zip(*seed.metric, strict=True)
            scaled = [value * curves.scale for value in values]
            metric_axis.plot(steps, scaled, color=colour, marker="o", label=f"seed {seed.seed}")
    loss_axis.set_ylabel("training loss (logged batches)")
    metric_axis.set_ylabel(_curve_metric_label(curves))
    for axis, title in ((loss_axis, "training loss"), (metric_axis, "after each epoch")):
        axis.set_xlabel("optimizer step")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_title(title)
        axis.grid(alpha=0.3)
        if axis.lines:
            axis.legend(fontsize="x-small", loc="best")
    _suptitle(figure, f"{_title(curves.model, curves.task)}: {curves.label}")
    return _save(figure, path)


def _short_labels(curves: TaskCurves) -> list[str]:
    """The method's name (and the run it started from, if any) where it and the budget tell the panel's curves
    apart, else the whole configuration."""
    short = [display(c.method).label + (f", from {c.start}" if c.start else "") for c in curves.curves]
    keys = [(label, c.budget) for label, c in zip(short, curves.curves, strict=True)]
    labels = short if len(set(keys)) == len(keys) else [c.label for c in curves.curves]
    return [
        f"{label} ({c.budget} ep, n={c.n_seeds})" if c.budget else f"{label} (n={c.n_seeds})"
        for label, c in zip(labels, curves.curves, strict=True)
    ]


def plot_dev_curves(tasks: Sequence[TaskCurves], path: Path) -> Path | None:
    """The dev metric after each epoch, one panel per (model, task), one curve per configuration: the median
    over seeds, a band from the lowest to the highest seed, the best epoch of the median marked. None when no
    configuration evaluated two epochs."""
    if not tasks:
        return None
    order = {key: index for index, key in enumerate(_panel_order([(t.family, t.model, t.task) for t in tasks]))}
    tasks = sorted(tasks, key=lambda t: order[(t.family, t.model, t.task)])
    figure, axes = _panels(len(tasks), height=3.4)
    for ax, panel in zip(axes, tasks, strict=True):
        seen: dict[str, int] = {}
        for curve, label in zip(panel.curves, _short_labels(panel), strict=True):
            shown = display(curve.method)
            repeat = seen.get(curve.method, 0)  # the method again (another budget): its colour, another dash
            seen[curve.method] = repeat + 1
            colour, dashes = shown.colour, _LINE_STYLES[repeat % len(_LINE_STYLES)]
            ax.plot(
                curve.epochs,
                curve.median,
                color=colour,
                linestyle=dashes,
                marker=shown.marker,
                markersize=3,
                label=label,
            )
            ax.fill_between(curve.epochs, curve.low, curve.high, color=colour, alpha=0.18, linewidth=0)
            best = max(range(len(curve.median)), key=lambda i: curve.median[i])
            ax.plot(curve.epochs[best], curve.median[best], color=colour, marker="*", markersize=11)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        name = _METRIC_NAMES.get(panel.metric, panel.metric)
        ax.set_ylabel(f"dev {name}" + (f" ×{panel.scale:g}" if panel.scale != 1 else ""))
        ax.set_title(_title(panel.model, panel.task))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small", loc="best")
    _suptitle(
        figure,
        "Dev score per epoch: median over seeds, band = lowest to highest seed, ★ = best epoch",
    )
    return _save(figure, path)
