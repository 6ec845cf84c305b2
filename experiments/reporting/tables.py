"""The report's tables, built from the per-configuration aggregates: each is a display frame (what report.md
and the LaTeX file show), a numeric frame (the CSV), and a caption that names the model behind the numbers.

Cells read ``median (min–max; n=k)``: the median over seeds, the lowest and highest seed, k scored seeds;
failed, incomplete and scoring-pending seeds are named in the cell, and a configuration never run for a column
reads "missing".
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import pandas as pd
from scipy.stats import PermutationMethod, mannwhitneyu

from experiments.methods import display, rank_stabilised
from experiments.paper_numbers import (
    E2E_METRICS,
    GLUE_TASKS,
    TABLE2,
    TABLE3,
    TABLE5,
    TABLE5_BUDGETS,
    TABLE18,
    PaperRow,
    paper_row,
)
from experiments.recipes import E2ERecipe
from experiments.reporting.aggregate import cell_from, format_count, seed_scores

__all__ = [
    "PAPER_MODEL_NAMES",
    "RANKS",
    "TASK_NAMES",
    "Table",
    "alpha_table",
    "configurations_table",
    "e2e_table",
    "e2e_vs_paper_table",
    "failures_table",
    "glue_budget_table",
    "glue_methods_table",
    "glue_significance_table",
    "glue_vs_paper_table",
    "in_table2",
    "incomplete_table",
    "models_note",
    "paper_model",
    "rank_series",
    "rank_table",
    "target_budget",
    "targets_table",
]

TASK_NAMES = {
    "mnli": "MNLI",
    "sst2": "SST-2",
    "mrpc": "MRPC",
    "cola": "CoLA",
    "qnli": "QNLI",
    "qqp": "QQP",
    "rte": "RTE",
    "stsb": "STS-B",
    "e2e": "E2E",
}
PAPER_MODEL_NAMES = {
    "roberta-base": "RoBERTa-base",
    "roberta-large": "RoBERTa-large",
    "gpt2-medium": "GPT-2 M",
    "gpt2-large": "GPT-2 L",
}
RANKS = (1, 2, 4, 8, 16, 32, 64)  # conf/sweep/rank.yaml, the paper's Tables 6 and 18
E2E_DIGITS = {"BLEU": 1, "NIST": 2, "METEOR": 1, "ROUGE_L": 1, "CIDEr": 2}  # as Table 3 prints them
TABLE18_DIGITS = {"BLEU": 2, "NIST": 2, "METEOR": 1, "ROUGE_L": 1, "CIDEr": 2}  # as Table 18 prints them (x100)
E2E_NAMES = {"BLEU": "BLEU", "NIST": "NIST", "METEOR": "METEOR", "ROUGE_L": "ROUGE-L", "CIDEr": "CIDEr"}
_ATTENTION = ("Wq", "Wk", "Wv", "Wo")
_BUDGET = 8  # r x number of matrices in every Table 5 pair
GLUE_UNITS = (
    "GLUE dev set, the best epoch of each run (as the paper), x100: accuracy (MNLI matched, SST-2, MRPC, QNLI, "
    "QQP, RTE), Matthews correlation (CoLA), Pearson (STS-B)."
)
SPREAD_NOTE = (
    "Cells: median over seeds (lowest–highest seed; n = seeds with a score); the paper's ± is printed as is "
    "(the paper does not define it)."
)


@dataclass(frozen=True)
class Table:
    """One report table: ``display`` (markdown/LaTeX), ``data`` (CSV), and the caption that goes with both."""

    name: str
    title: str
    caption: str
    display: pd.DataFrame
    data: pd.DataFrame


def paper_model(family: str, model: str, model_recipe: str | None) -> str:
    """The paper model whose numbers a run is set beside: its recipe's model for GLUE, GPT-2 M/L for E2E."""
    if family == "e2e":
        return "gpt2-large" if model == "gpt2-large" else "gpt2-medium"
    return "roberta-large" if "roberta-large" in (model, model_recipe) else "roberta-base"


def models_note(groups: pd.DataFrame) -> str:
    """Which models produced the numbers of ``groups``, and what each stands in for."""
    if groups.empty:
        return ""
    notes = []
    seen = groups.drop_duplicates(["family", "model"])
    for _, row in seen.sort_values(["family", "model"]).iterrows():
        reference = PAPER_MODEL_NAMES[paper_model(row["family"], row["model"], row["model_recipe"])]
        source = f" ({row['model_source']})" if row.get("model_source") else ""
        if row["model_recipe"] == "quick":
            role = "a tiny random-weight model for pipeline checks: its numbers say nothing about the methods"
        elif row["model"] == paper_model(row["family"], row["model"], row["model_recipe"]):
            role = "the paper's own model"
        else:
            role = f"a stand-in for {reference}, so the paper's numbers are a reference, not a like-for-like comparison"
        notes.append(f"**{row['model']}**{source}: {role}")
    return "Numbers from " + "; ".join(notes) + "."


def _is(value: Any, expected: Any) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    if isinstance(expected, (int, float)) and not isinstance(expected, bool):
        return math.isclose(float(value), float(expected))
    return value == expected


def _flag(value: Any) -> bool:
    """A yes/no setting read from a DataFrame cell (bool, numpy bool, or None/NaN for "not applicable")."""
    return False if value is None or (isinstance(value, float) and math.isnan(value)) else bool(value)


def _targets(value: Any) -> tuple[str, ...]:
    """LoRA targets as a set in the paper's order (Wq, Wk, Wv, Wo, then any other name)."""
    names = set(str(value).split("+")) if isinstance(value, str) and value else set()
    return tuple(n for n in _ATTENTION if n in names) + tuple(sorted(names - set(_ATTENTION)))


def _is_paper_setting(row: pd.Series) -> bool:
    """The paper's configuration of a method: for a low-rank one, the recipe's r and alpha on Wq, Wv, no rsLoRA."""
    if pd.isna(row["r"]):
        return True
    return (
        _is(row["r"], row["recipe_r"])
        and _is(row["lora_alpha"], row["recipe_alpha"])
        and _targets(row["targets"]) == ("Wq", "Wv")
        and _flag(row["use_rslora"]) == rank_stabilised(row["method"])
    )


def _paper_cell(row: PaperRow | None, key: str, digits: int = 1) -> str:
    if row is None or key not in row.scores:
        return "—"
    score = row.scores[key]
    return f"{score.value:.{digits}f}" + (f" ±{score.spread:.{digits}f}" if score.spread is not None else "")


def _method_order(method: str) -> int:
    return display(method).order


def _init_mark(group: pd.Series) -> str:
    return " †" if group["init_from"] not in (None, "pretrained") else ""


def _cells_by_column(
    groups: pd.DataFrame, column: Callable[[pd.Series], Hashable], then: Sequence[str] = ()
) -> list[dict[Hashable, pd.Series]]:
    """Lay ``groups`` of one table row out by column; a column with several groups (runs that started from
    different weights, or, with ``then``, differ in those columns) spills into extra rows, pretrained first,
    so nothing is pooled or dropped."""
    by_column: dict[Hashable, list[pd.Series]] = {}
    ordered = groups.assign(_pre=groups["init_from"] != "pretrained").sort_values(["_pre", "init_from", *then])
    for _, group in ordered.iterrows():
        by_column.setdefault(column(group), []).append(group)
    depth = max((len(v) for v in by_column.values()), default=0)
    return [{key: cells[i] for key, cells in by_column.items() if i < len(cells)} for i in range(depth)]


def _tasks(groups: pd.DataFrame) -> list[str]:
    present = set(groups["task"].dropna())
    return [t for t in GLUE_TASKS if t in present] + sorted(present - set(GLUE_TASKS))


def _range_of(groups: pd.DataFrame, column: str) -> str:
    low = groups[column].dropna()
    high = groups[f"{column}_max"].dropna()
    if low.empty:
        return "—"
    return format_count(float(low.min()), float(high.max()) if not high.empty else None)


def _long_rows(groups: pd.DataFrame, extra: Callable[[pd.Series], dict[str, Any]]) -> pd.DataFrame:
    keep = ["family", "model", "task", "method", "variant", "init_from", "main_metric", "median", "min", "max"]
    keep += ["spread", "n", "n_failed", "n_incomplete", "n_pending", "seeds"]
    keep += ["trainable_params", "trainable_params_with_head", "epochs", "steps_median", "best_epoch_median"]
    rows = [{k: group.get(k) for k in keep} | extra(group) for _, group in groups.iterrows()]
    return pd.DataFrame(rows)


# --- GLUE -------------------------------------------------------------------------------------------------


def in_table2(row: pd.Series) -> bool:
    """Whether a run or configuration belongs in the Table 2 layout: GLUE, in the paper's setting of its method."""
    return row["family"] == "glue" and _is_paper_setting(row)


def _table2_groups(groups: pd.DataFrame) -> pd.DataFrame:
    glue = groups[groups["family"] == "glue"]
    if glue.empty:
        return glue
    return glue[glue.apply(_is_paper_setting, axis=1)]


def _paper_glue(group: pd.Series) -> dict[str, Any]:
    model = paper_model("glue", group["model"], group["model_recipe"])
    row = paper_row(TABLE2, model, group["method"])
    score = row.scores.get(group["task"]) if row else None
    return {
        "paper_model": model,
        "paper_source": row.source if row else None,
        "paper": score.value if score else None,
        "paper_spread": score.spread if score else None,
        "delta": group["median"] - score.value if score and not math.isnan(group["median"]) else None,
    }


class _Table2Row(NamedTuple):
    model: str
    label: str
    members: pd.DataFrame  # the row's configurations, every budget and start
    cells: dict[Hashable, pd.Series]  # task -> the configuration in this row


def _table2_rows(selected: pd.DataFrame) -> list[_Table2Row]:
    """The rows of the Table 2 layout, in order.

    A row is a method's configuration with the epoch budget left out (each task has its own budget, shared by
    the methods; the budget table beside Table 2 states it). A row and task with runs of two budgets or two
    starting points spills into another row (the budget with the most seeds stays in the first), so runs are
    never pooled across them.
    """
    out = []
    for model, of_model in selected.groupby("model", sort=True):
        series = of_model.drop_duplicates("budget_series_key")
        series = series.assign(_o=series["method"].map(_method_order)).sort_values(["_o", "budget_series"])
        for _, first in series.iterrows():
            members = of_model[of_model["budget_series_key"] == first["budget_series_key"]]
            for layer, cells in enumerate(_cells_by_task(members)):
                label = first["budget_series"] + (_spill_suffix(cells) if layer else "")
                out.append(_Table2Row(str(model), label, members, cells))
    return out


def _cells_by_task(groups: pd.DataFrame, main: Mapping[Hashable, Any] | None = None) -> list[dict[Hashable, pd.Series]]:
    """:func:`_cells_by_column` by task, each task's main epoch budget in the first row: ``main`` (task ->
    epochs), by default :func:`_main_budgets` of ``groups``; other budgets spill, most seeds first."""
    main = _main_budgets(groups) if main is None else main
    pairs = zip(groups["task"], groups["epochs"], strict=True)
    other = [_epochs(epochs) != _epochs(main.get(task)) for task, epochs in pairs]
    ordered = groups.assign(_other=other, _fewer=-groups["n"], _shorter=-groups["epochs"].fillna(0))
    return _cells_by_column(ordered, lambda g: g["task"], ("_other", "_fewer", "_shorter"))


def _main_budgets(groups: pd.DataFrame) -> dict[Hashable, Any]:
    """Each task's epoch budget with the most seeds across ``groups`` from pretrained weights (of two with as
    many, the longer one): the budget one table column keeps in every row."""
    pretrained = groups[groups["init_from"] == "pretrained"]
    seeds = pretrained.groupby(["task", "epochs"], dropna=False)["n"].sum().reset_index()
    seeds = seeds.sort_values(["n", "epochs"], ascending=False, na_position="last")
    return {task: of_task.iloc[0]["epochs"] for task, of_task in seeds.groupby("task", sort=False)}


def _spill_suffix(cells: Mapping[Hashable, pd.Series]) -> str:
    """What sets a spilled row's cells apart from the first row's: another start (†), another epoch budget, or
    both (a cell from pretrained weights in a spilled row is there for its budget)."""
    reasons = ["other start"] if any(g["init_from"] != "pretrained" for g in cells.values()) else []
    budgets = {_epochs(g["epochs"]) for g in cells.values() if g["init_from"] == "pretrained"}
    if budgets:
        reasons.append(f"other budget: {'/'.join(sorted(budgets, key=_epoch_order))} epochs")
    return f" ({'; '.join(reasons)})"


def _epoch_order(epochs: str) -> tuple[int, str]:
    """Sort key of :func:`_epochs` strings: by number ('?' last)."""
    return (len(epochs) if epochs != "?" else 99, epochs)


def _epochs(value: Any) -> str:
    return "?" if value is None or pd.isna(value) else f"{int(value)}"


def _budget_line(selected: pd.DataFrame, tasks: list[str]) -> str:
    """Each task's epoch budget in one sentence (per method where the methods' budgets differ)."""
    paper = [
        f"{TASK_NAMES.get(t, t)} {_epochs(e)}"
        for t in tasks
        for e in selected.loc[(selected["task"] == t) & (selected["method"] == "lora"), "recipe_epochs"].dropna()[:1]
    ]
    recipe = f" (the paper's RoBERTa LoRA recipe: {', '.join(paper)})" if paper else ""
    return (
        f"Training budget, epochs: {_task_budgets(selected, tasks)}{recipe}; optimizer steps and the epoch each "
        "run's score comes from are in the budget table below."
    )


def _task_budgets(selected: pd.DataFrame, tasks: list[str]) -> str:
    """'MRPC 20, STS-B 10': each task's epoch budget (naming the methods of each where a task has several)."""
    parts = []
    for task in tasks:
        of_task = selected[selected["task"] == task]
        if of_task.empty:
            continue
        budgets = sorted({_epochs(e) for e in of_task["epochs"]}, key=_epoch_order)
        if len(budgets) == 1:
            parts.append(f"{TASK_NAMES.get(task, task)} {budgets[0]}")
        else:
            methods = {b: of_task.loc[of_task["epochs"].map(_epochs) == b, "method"] for b in budgets}
            by_budget = [f"{b} ({', '.join(sorted({display(m).label for m in methods[b]}))})" for b in budgets]
            parts.append(f"{TASK_NAMES.get(task, task)} {' / '.join(by_budget)}")
    return ", ".join(parts)


def glue_methods_table(groups: pd.DataFrame) -> Table | None:
    """The paper's Table 2 layout: method x task for each model, with the paper's rows beneath as reference."""
    selected = _table2_groups(groups)
    if selected.empty:
        return None
    tasks = _tasks(groups[groups["family"] == "glue"])
    rows: list[dict[str, str]] = []
    for model, label, members, cells in _table2_rows(selected):
        row = {
            "Model": model,
            "Method": label,
            "Trainable": _range_of(members, "trainable_params"),
            "+ head": _range_of(members, "trainable_params_with_head"),
        }
        for task in tasks:
            group = cells.get(task)
            row[TASK_NAMES.get(task, task)] = cell_from(group) + (_init_mark(group) if group is not None else "")
        scored = [cells[t]["median"] for t in GLUE_TASKS if t in cells and cells[t]["n"] > 0]
        row["Avg."] = f"{sum(scored) / len(scored):.1f}" if len(scored) == 8 else f"— ({len(scored)}/8 tasks)"
        rows.append(row)
    references = sorted(
        {paper_model("glue", m, r) for m, r in zip(selected["model"], selected["model_recipe"], strict=True)}
    )
    for reference in references:
        for paper in (r for r in TABLE2 if r.model == reference):
            row = {
                "Model": f"paper: {PAPER_MODEL_NAMES[reference]}",
                "Method": f"{display(paper.method).label} ({paper.source})",
                "Trainable": paper.trainable,
                "+ head": "—",
            }
            for task in tasks:
                row[TASK_NAMES.get(task, task)] = _paper_cell(paper, task)
            row["Avg."] = _fixed(paper.average, 1) if paper.average is not None else "—"
            rows.append(row)
    not_run = [TASK_NAMES[t] for t in GLUE_TASKS if t not in tasks]
    caption = " ".join(
        [
            models_note(selected),
            GLUE_UNITS,
            SPREAD_NOTE,
            "LoRA rows: the recipe's r and alpha on Wq, Wv (other LoRA settings are in the rank, alpha and "
            "target tables). Trainable excludes the task head, as the paper counts; '+ head' includes it.",
            "† started from a trained adapter (the paper starts MRPC, RTE and STS-B from its MNLI LoRA adapter).",
            "Avg. is the mean of the eight task medians, shown only when all eight exist.",
            _budget_line(selected, tasks),
            f"Tasks with no run at all: {', '.join(not_run)}." if not_run else "",
        ]
    ).strip()
    return Table(
        "glue_methods",
        "GLUE: LoRA vs full fine-tuning vs BitFit (paper Table 2 layout)",
        caption,
        pd.DataFrame(rows),
        _long_rows(selected, _paper_glue),
    )


def _count_range(group: pd.Series, column: str) -> str:
    low, high = group[f"{column}_min"], group[f"{column}_max"]
    if pd.isna(low):
        return "?"
    return f"{int(low):,}" if low == high else f"{int(low):,}–{int(high):,}"


def _budget_cell(group: pd.Series | None) -> str:
    """``20 ep · 1,560 steps · best ep. 14 (10–20)``: the budget, the steps taken, the epochs the scores are from."""
    if group is None:
        return "—"
    epochs = _epochs(group["epochs"])
    if not pd.isna(group.get("epochs_max")) and group["epochs_max"] != group["epochs"]:
        epochs += f"–{_epochs(group['epochs_max'])}"
    parts = [f"{epochs} ep"]
    if not pd.isna(group["steps_min"]):
        parts.append(f"{_count_range(group, 'steps')} steps")
    if not pd.isna(group["best_epoch_median"]):
        spread = _count_range(group, "best_epoch")
        best = f"best ep. {group['best_epoch_median']:g}" + (f" ({spread})" if "–" in spread else "")
        parts.append(best)
    return " · ".join(parts)


def glue_budget_table(groups: pd.DataFrame) -> Table | None:
    """The training budget behind each Table 2 cell: epochs, optimizer steps, and the epoch the score is from."""
    selected = _table2_groups(groups)
    if selected.empty:
        return None
    tasks = _tasks(groups[groups["family"] == "glue"])
    rows = []
    for model, label, _, cells in _table2_rows(selected):
        row = {"Model": model, "Method": label}
        rows.append(row | {TASK_NAMES.get(t, t): _budget_cell(cells.get(t)) for t in tasks})
    data = _long_rows(selected, lambda g: {k: g.get(k) for k in ("epochs", "steps_min", "steps_max")})
    data = data.assign(
        best_epoch_min=selected["best_epoch_min"].to_numpy(), best_epoch_max=selected["best_epoch_max"].to_numpy()
    )
    caption = " ".join(
        [
            "The rows and cells of the Table 2 layout above. ep: the epoch budget (train.epochs); steps: the "
            "optimizer steps each seed took (a range where seeds differ); best ep.: the epoch whose dev score is "
            "the run's score, median over seeds (lowest–highest). A best epoch at the end of the budget says the "
            "dev score was still rising: see the dev curves below.",
        ]
    )
    return Table("glue_budget", "GLUE: training budget behind each cell", caption, pd.DataFrame(rows), data)


_COMPARED = (("lora", "full_ft"), ("lora", "bitfit"))  # (first, second) methods of the seed-noise table
_COMPARED_ALIKE = ("preset", "epochs", "init_from")  # what two compared cells share


# Up to this many ways to split the pooled seeds, p comes from all of them (exact, ties included).
_EXACT_SPLITS = 100_000


def _u_method(first: Sequence[float], second: Sequence[float]) -> PermutationMethod | str:
    """How Mann–Whitney's p is found: from every split of the pooled scores where that is cheap (5 vs 5 seeds:
    252 splits), else from U's exact distribution when no two scores tie, else the normal approximation.
    scipy's default takes the approximation at any tie, which for 3 vs 3 seeds reads p = 0.077 where no split
    can give less than 0.1."""
    if math.comb(len(first) + len(second), len(first)) <= _EXACT_SPLITS:
        return PermutationMethod(n_resamples=math.inf)
    return "exact" if len({*first, *second}) == len(first) + len(second) else "asymptotic"


def _p_value(p: float) -> str:
    if math.isnan(p):
        return "—"
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def _comparison(
    runs: pd.DataFrame, first: _Table2Row, second: _Table2Row, task: str
) -> tuple[dict[str, str], dict[str, Any]]:
    """One row of the seed-noise table, (display, data): ``first``'s cell on ``task`` against ``second``'s."""
    one, two = first.cells[task], second.cells[task]
    first_scores, second_scores = seed_scores(runs, one), seed_scores(runs, two)
    delta = one["median"] - two["median"] if first_scores and second_scores else math.nan
    u, p = math.nan, math.nan
    if len(first_scores) >= 2 and len(second_scores) >= 2:
        method = _u_method(first_scores, second_scores)
        test = mannwhitneyu(first_scores, second_scores, alternative="two-sided", method=method)
        u, p = float(test.statistic), float(test.pvalue)
    shown = {
        "Model": first.model,
        "Task": TASK_NAMES.get(task, task),
        "Epochs": _epochs(one["epochs"]) + _init_mark(one),
        "First": one["budget_series"],  # the budget is in its own column, so no row's "(other budget)" mark
        "Second": two["budget_series"],
        "Δ median (first − second)": "—" if math.isnan(delta) else f"{delta:+.2f}",
        "n (first / second)": f"{len(first_scores)} / {len(second_scores)}",
        "p (Mann–Whitney U)": _p_value(p),
    }
    data = (
        {"family": "glue", "model": first.model, "task": task, "main_metric": one["main_metric"]}
        | {"first": one["budget_series"], "second": two["budget_series"], "first_method": one["method"]}
        | {"second_method": two["method"]}
        | {k: one[k] for k in _COMPARED_ALIKE}
        | {"median_first": one["median"], "median_second": two["median"], "delta": delta}
        | {"n_first": len(first_scores), "n_second": len(second_scores), "u": u, "p": p}
        | {"seeds_first": one["seeds"], "seeds_second": two["seeds"]}
        | {"scores_first": " ".join(f"{v:.4f}" for v in first_scores)}
        | {"scores_second": " ".join(f"{v:.4f}" for v in second_scores)}
    )
    return shown, data


def glue_significance_table(groups: pd.DataFrame, runs: pd.DataFrame) -> Table | None:
    """LoRA against full FT and against BitFit on each task of the Table 2 layout, at every epoch budget and start
    the two methods share (a method's first row may hold another budget than the other's, e.g. a longer one that
    converges): the difference of the medians and a two-sided Mann-Whitney U test over the per-seed scores."""
    selected = _table2_groups(groups)
    if selected.empty:
        return None
    table_rows = _table2_rows(selected)
    rows, data = [], []
    for model in sorted({row.model for row in table_rows}):
        for task in _tasks(selected):
            present = [row for row in table_rows if row.model == model and task in row.cells]
            for methods in _COMPARED:
                for first, second in itertools.product(present, present):
                    one, two = first.cells[task], second.cells[task]
                    if (one["method"], two["method"]) == methods and all(one[k] == two[k] for k in _COMPARED_ALIKE):
                        shown, long = _comparison(runs, first, second, task)
                        rows.append(shown)
                        data.append(long)
    if not rows:
        return None
    caption = " ".join(
        [
            models_note(selected),
            "Does LoRA differ from full FT and BitFit by more than the seeds do? For each task, at every epoch budget"
            " and start both methods ran with the same preset (a cell of the Table 2 layout above, in a method's "
            "first row or a spilled one): Δ = the first median − the second (x100, as in Table 2), n = the seeds with"
            " a score on each side, p = the two-sided Mann–Whitney U test of the per-seed scores (each run's "
            "best-epoch dev score as in Table 2): twice the smaller one-sided tail (at most 1) of U's distribution "
            "over every split of the pooled scores into two groups of these sizes, so exact with tied scores too "
            "(scipy.stats.mannwhitneyu with an exhaustive PermutationMethod; beyond 100,000 splits, U's exact "
            "distribution without ties, else the normal approximation).",
            "The seeds are not paired (seed k of one method shares nothing with seed k of the other but the "
            "number), so the test compares two independent samples. The smallest possible p is 2/252 ≈ 0.008 "
            "with 5 vs 5 seeds and 2/20 = 0.1 with 3 vs 3: a p there is as strong as that many seeds can show. "
            "p reads — with fewer than 2 seeds on a side. One test per row, with no correction for the number of "
            "rows.",
        ]
    )
    title = "GLUE: LoRA − full FT and LoRA − BitFit against seed noise (Mann–Whitney U)"
    return Table("glue_significance", title, caption, pd.DataFrame(rows), pd.DataFrame(data))


def glue_vs_paper_table(groups: pd.DataFrame) -> Table | None:
    """Each of our Table-2 cells beside the paper's number for the same method and task, with the difference."""
    selected = _table2_groups(groups)
    if selected.empty:
        return None
    data = _long_rows(selected, _paper_glue)
    data = data.assign(_o=data["method"].map(_method_order), _t=data["task"].map(_task_order))
    data = data.sort_values(["model", "_o", "variant", "_t"]).drop(columns=["_o", "_t"])
    display = pd.DataFrame(
        {
            "Model": data["model"],
            "Method": data["variant"],
            "Task": data["task"].map(lambda t: TASK_NAMES.get(t, t)),
            "Ours": [cell_from(g) for _, g in _as_cells(data).iterrows()],
            "Paper": [
                _fmt_paper(v, s, m)
                for v, s, m in zip(data["paper"], data["paper_spread"], data["paper_model"], strict=True)
            ],
            "Δ (ours − paper)": [f"{d:+.1f}" if d is not None and not math.isnan(d) else "—" for d in data["delta"]],
        }
    )
    caption = " ".join(
        [
            models_note(selected),
            GLUE_UNITS,
            SPREAD_NOTE,
            "Paper: its Table 2 row for the same method (full FT and BitFit are quoted there from prior work); "
            "Δ = our median − the paper's number.",
        ]
    )
    return Table("glue_vs_paper", "GLUE: ours vs the paper, cell by cell", caption, display, data)


def _task_order(task: str) -> int:
    return GLUE_TASKS.index(task) if task in GLUE_TASKS else len(GLUE_TASKS)


def _as_cells(data: pd.DataFrame) -> pd.DataFrame:
    """Long rows with the columns :func:`cell_from` reads."""
    return data[["median", "min", "max", "n", "n_failed", "n_incomplete", "n_pending"]]


def _fixed(value: float, digits: int) -> str:
    return f"{value:.{digits}f}"


def _fmt_paper(value: float | None, spread: float | None, model: str | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    text = f"{value:.1f}" + (f" ±{spread:.1f}" if spread is not None and not math.isnan(spread) else "")
    return f"{text} ({PAPER_MODEL_NAMES.get(model, model)})" if model else text


# --- rank and alpha ---------------------------------------------------------------------------------------


def _metric_label(group: pd.Series) -> str:
    metric = group.get("main_metric") or "score"
    return f"{metric} ×100" if group["family"] == "glue" or metric in ("BLEU", "METEOR", "ROUGE_L") else metric


def _rank_columns(ranks: Iterable[Any]) -> list[int]:
    return sorted({int(r) for r in ranks} | set(RANKS))


def rank_series(groups: pd.DataFrame) -> list[tuple[tuple[Any, ...], pd.DataFrame]]:
    """LoRA configurations that were run at two or more ranks r (all else equal), keyed by
    (family, model, task, rank series, init_from)."""
    lora = groups[groups["r"].notna()]
    keys = ["family", "model", "task", "rank_series_key", "init_from"]
    out = []
    for key, series in lora.groupby(keys, sort=True):
        if series["r"].nunique() >= 2:
            out.append((key, series.sort_values("r")))
    return out


def rank_table(groups: pd.DataFrame) -> Table | None:
    """Score by LoRA rank r for every configuration run at several ranks (paper Tables 6 and 18)."""
    series = rank_series(groups)
    if not series:
        return None
    columns = _rank_columns(r for _, s in series for r in s["r"])
    rows, data = [], []
    shown = pd.concat([s for _, s in series])
    for (family, model, task, _, init), members in series:
        first = members.iloc[0]
        by_rank = {int(g["r"]): g for _, g in members.iterrows()}
        row = {
            "Model": model,
            "Task": TASK_NAMES.get(task, task),
            "Configuration": first["rank_series"] + ("" if init == "pretrained" else f"; from {init}"),
            "Metric": _metric_label(first),
        }
        row |= {f"r={r}": cell_from(by_rank.get(r)) for r in columns}
        rows.append(row)
        paper = (
            TABLE18 if family == "e2e" and paper_model(family, model, first["model_recipe"]) == "gpt2-medium" else {}
        )
        for r, group in by_rank.items():
            reference = paper.get(r, {}).get("BLEU") if paper else None
            data.append(
                {k: group.get(k) for k in ("family", "model", "task", "rank_series", "init_from", "main_metric")}
                | {"r": r}
                | {k: group.get(k) for k in ("median", "min", "max", "spread", "n", "n_failed", "n_incomplete")}
                | {"trainable_params": group.get("trainable_params")}
                | {"paper_table18_bleu": reference.value if reference else None}
            )
        if paper:
            rows.append(
                {
                    "Model": "paper: GPT-2 M",
                    "Task": "E2E",
                    "Configuration": "LoRA Wq+Wv, α=32 (Table 18)",
                    "Metric": "BLEU ×100",
                }
                | {f"r={r}": _fixed(paper[r]["BLEU"].value, 2) if r in paper else "—" for r in columns}
            )
    caption = " ".join(
        [
            models_note(shown),
            "Each row is one LoRA configuration run at several ranks, everything else equal (conf/sweep/rank.yaml "
            "keeps alpha fixed, so the scaling alpha/r falls as r grows).",
            SPREAD_NOTE,
            "GLUE: dev score of the best epoch. E2E: test BLEU; the paper row is its Table 18 (GPT-2 M). The paper's "
            "Table 6 (GPT-3 175B) gives no numbers here: it finds accuracy flat in r, with r=1 already competitive "
            "on Wq, Wv.",
        ]
    )
    return Table(
        "rank", "Score vs LoRA rank r (paper Tables 6 and 18)", caption, pd.DataFrame(rows), pd.DataFrame(data)
    )


def _alpha_rules(members: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame]]:
    """(rule, scaling, groups) for the scaling rules present in one block: fixed alpha (one per value),
    alpha = r, and rsLoRA (one per alpha). A run with alpha = r belongs to both "alpha = r" and
    "fixed alpha" (when other ranks ran at that alpha): it is the same run. A rule all of whose runs
    belong to another rule too adds nothing and is left out."""
    rules: list[tuple[str, str, pd.DataFrame]] = []
    flags = members["use_rslora"].map(_flag)
    plain = members[~flags]
    for alpha in sorted(plain["lora_alpha"].dropna().unique()):
        fixed = plain[plain["lora_alpha"] == alpha]
        if (fixed["r"].astype(float) != alpha).any():
            rules.append((f"fixed α={alpha:g}", "α/r", fixed))
    equal = plain[plain["r"].astype(float) == plain["lora_alpha"]]
    in_fixed = {key for _, _, fixed in rules for key in fixed["variant_key"]}
    if not set(equal["variant_key"]) <= in_fixed:
        rules.append(("α = r", "1", equal))
    stable = members[flags]
    for alpha in sorted(stable["lora_alpha"].dropna().unique()):
        rules.append((f"rsLoRA α={alpha:g}", "α/√r", stable[stable["lora_alpha"] == alpha]))
    return rules


def alpha_table(groups: pd.DataFrame) -> Table | None:
    """Score by rank under each alpha scaling rule (fixed alpha, alpha = r, rsLoRA), where two or more ran."""
    lora = groups[groups["r"].notna()]
    blocks = []
    for key, members in lora.groupby(["family", "model", "task", "alpha_series_key", "init_from"], sort=True):
        rules = _alpha_rules(members)
        if len(rules) >= 2:
            blocks.append((key, members, rules))
    if not blocks:
        return None
    columns = _rank_columns(r for _, m, _ in blocks for r in m["r"])
    rows, data = [], []
    for (_, model, task, _, init), members, rules in blocks:
        first = members.iloc[0]
        for rule, scaling, chosen in rules:
            by_rank = {int(g["r"]): g for _, g in chosen.iterrows()}
            row = {
                "Model": model,
                "Task": TASK_NAMES.get(task, task),
                "Configuration": first["alpha_series"] + ("" if init == "pretrained" else f"; from {init}"),
                "Rule": rule,
                "Scaling": scaling,
            }
            rows.append(row | {f"r={r}": cell_from(by_rank.get(r)) for r in columns})
            for r, group in by_rank.items():
                data.append(
                    {"family": group["family"], "model": model, "task": task, "configuration": first["alpha_series"]}
                    | {"rule": rule, "scaling": scaling, "r": r, "lora_alpha": group["lora_alpha"]}
                    | {k: group.get(k) for k in ("main_metric", "median", "min", "max", "spread", "n", "n_failed")}
                )
    shown = pd.concat([m for _, m, _ in blocks])
    caption = " ".join(
        [
            models_note(shown),
            "How the update is scaled as r changes (conf/sweep/alpha.yaml): fixed alpha (scaling α/r, the paper's "
            "practice), α = r (scaling 1), rsLoRA (scaling α/√r). Where α equals r, the fixed-α and α = r rows show "
            "the same run.",
            SPREAD_NOTE,
            "GLUE: dev score of the best epoch (x100); E2E: test BLEU (x100). The paper has no such table.",
        ]
    )
    return Table("alpha", "Scaling rule for alpha, by rank", caption, pd.DataFrame(rows), pd.DataFrame(data))


# --- target matrices --------------------------------------------------------------------------------------


def target_budget(targets: Any, r: Any) -> tuple[tuple[str, ...], int] | None:
    """(targets, r) when a LoRA configuration spends the Table 5 budget (r x matrices = 8 on attention)."""
    names = _targets(targets)
    if not names or any(n not in _ATTENTION for n in names) or r is None or pd.isna(r):
        return None
    return (names, int(r)) if int(r) * len(names) == _BUDGET else None


def _budget_label(budget: tuple[tuple[str, ...], int]) -> str:
    return f"{'+'.join(budget[0])} (r={budget[1]})"


def targets_table(groups: pd.DataFrame) -> Table | None:
    """Which matrices to adapt at a fixed parameter budget (paper Table 5), with the paper's GPT-3 numbers."""
    lora = groups[groups["r"].notna()]
    lora = lora.assign(_budget=[target_budget(t, r) for t, r in zip(lora["targets"], lora["r"], strict=True)])
    lora = lora[lora["_budget"].notna()]
    blocks = [
        (key, members)
        for key, members in lora.groupby(["family", "model", "target_series_key"], sort=True)
        if members["_budget"].nunique() >= 2
    ]
    if not blocks:
        return None
    shown = pd.concat([m for _, m in blocks])
    tasks = _tasks(shown)
    rows, data = [], []
    main_budgets: dict[Hashable, set[str]] = {}  # task -> the budgets its columns keep (one per block)
    for (_, model, _), members in blocks:
        present = list(dict.fromkeys(members["_budget"]))
        order = list(TABLE5_BUDGETS) + sorted(b for b in present if b not in TABLE5_BUDGETS)
        main = _main_budgets(members)
        for task, epochs in main.items():
            main_budgets.setdefault(task, set()).add(_epochs(epochs))
        for budget in order:
            chosen = members[members["_budget"] == budget]
            paper = TABLE5.get(budget, {})
            for layer, cells in enumerate(_cells_by_task(chosen, main) or [{}]):
                row = {
                    "Model": model,
                    "Configuration": members.iloc[0]["target_series"] + (_spill_suffix(cells) if layer else ""),
                    "Targets (r)": _budget_label(budget),
                    "Trainable": _range_of(chosen, "trainable_params") if not chosen.empty else "—",
                }
                for task in tasks:
                    group = cells.get(task)
                    row[TASK_NAMES.get(task, task)] = cell_from(group) + (
                        _init_mark(group) if group is not None else ""
                    )
                row["paper MNLI (GPT-3)"] = _fixed(paper["mnli"], 1) if paper else "—"
                row["paper WikiSQL (GPT-3)"] = _fixed(paper["wikisql"], 1) if paper else "—"
                rows.append(row)
            for _, group in chosen.iterrows():
                data.append(
                    {k: group.get(k) for k in ("family", "model", "task", "target_series", "init_from", "epochs")}
                    | {"main_metric": group.get("main_metric")}
                    | {"targets": "+".join(budget[0]), "r": budget[1]}
                    | {k: group.get(k) for k in ("median", "min", "max", "spread", "n", "n_failed", "n_incomplete")}
                    | {"trainable_params": group.get("trainable_params")}
                    | {"paper_gpt3_mnli": paper.get("mnli"), "paper_gpt3_wikisql": paper.get("wikisql")}
                )
    kept = ", ".join(
        f"{TASK_NAMES.get(t, t)} {'/'.join(sorted(main_budgets[t], key=_epoch_order))}"
        for t in tasks
        if t in main_budgets
    )
    caption = " ".join(
        [
            models_note(shown),
            "LoRA on the attention matrices at the paper's fixed budget, r x (number of matrices) = 8, so each row "
            "trains the same number of parameters (conf/sweep/targets.yaml; alpha stays at the recipe's value).",
            SPREAD_NOTE,
            "GLUE: dev score of the best epoch (x100); E2E: test BLEU (x100). Paper columns: its Table 5, GPT-3 175B "
            "with 18M parameters on MultiNLI and WikiSQL — the shape to compare, not the level.",
            f"Each task's column keeps one epoch budget, the one with the most seeds: {kept}; runs at another "
            "budget sit in a row marked (other budget), runs from a trained adapter (†) in one marked (other start).",
        ]
    )
    title = "Which weight matrices to adapt at a fixed budget (paper Table 5)"
    return Table("targets", title, caption, pd.DataFrame(rows), pd.DataFrame(data))


# --- E2E --------------------------------------------------------------------------------------------------


def _paper_e2e(group: pd.Series) -> tuple[str | None, dict[str, Any]]:
    """The paper's E2E row for one of ours: Table 3 (its LoRA setting, full FT) or Table 18 (other ranks)."""
    model = paper_model("e2e", group["model"], group["model_recipe"])
    row = paper_row(TABLE3, model, group["method"])  # None for a method the paper did not run
    label = f"{PAPER_MODEL_NAMES[model]} {display(group['method']).label}"
    if row is None or pd.isna(group["r"]):
        return (f"{label}, {row.source}", dict(row.scores)) if row else (None, {})
    if not (
        _targets(group["targets"]) == ("Wq", "Wv")
        and _is(group["lora_alpha"], group["recipe_alpha"])
        and _flag(group["use_rslora"]) == rank_stabilised(group["method"])
    ):
        return None, {}
    if _is(group["r"], group["recipe_r"]):
        return f"{label}, Table 3", dict(row.scores)
    if model == "gpt2-medium" and int(group["r"]) in TABLE18:
        return f"GPT-2 M {display(group['method']).label} r={int(group['r'])}, Table 18", dict(TABLE18[int(group["r"])])
    return None, {}


def _e2e_long(e2e: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _, group in e2e.iterrows():
        source, scores = _paper_e2e(group)
        for metric in E2E_METRICS:
            median = group[f"{metric}_median"]
            paper = scores.get(metric)
            rows.append(
                {k: group.get(k) for k in ("family", "model", "task", "method", "variant", "init_from")}
                | {"metric": metric, "median": median, "min": group[f"{metric}_min"], "max": group[f"{metric}_max"]}
                | {k: group.get(k) for k in ("n", "n_failed", "n_incomplete", "n_pending", "seeds", "trainable_params")}
                | {"epochs": group.get("epochs"), "steps_median": group.get("steps_median")}
                | {
                    "paper_source": source,
                    "paper": paper.value if paper else None,
                    "paper_spread": paper.spread if paper else None,
                    "delta": median - paper.value if paper and not math.isnan(median) else None,
                }
            )
    return pd.DataFrame(rows)


def e2e_table(groups: pd.DataFrame) -> Table | None:
    """The paper's Table 3 layout: every E2E configuration x the five metrics, the paper's rows beneath."""
    e2e = groups[groups["family"] == "e2e"]
    if e2e.empty:
        return None
    e2e = e2e.assign(_o=e2e["method"].map(_method_order)).sort_values(["model", "_o", "r", "variant"])
    rows = []
    for _, group in e2e.iterrows():
        row = {
            "Model": group["model"],
            "Method": group["variant"] + ("" if group["init_from"] == "pretrained" else f"; from {group['init_from']}"),
            "Trainable": format_count(group["trainable_params"], group["trainable_params_max"]),
            "Budget": _budget_cell(group),
        }
        row |= {E2E_NAMES[m]: cell_from(group, f"{m}_", E2E_DIGITS[m]) for m in E2E_METRICS}
        rows.append(row)
    references = sorted({paper_model("e2e", m, r) for m, r in zip(e2e["model"], e2e["model_recipe"], strict=True)})
    for reference in references:
        for paper in (r for r in TABLE3 if r.model == reference):
            name = "PreLayer" if paper.method == "prefix_layer" else display(paper.method).label
            row = {
                "Model": f"paper: {PAPER_MODEL_NAMES[reference]}",
                "Method": f"{name} ({paper.source})",
                "Trainable": paper.trainable,
                "Budget": f"{E2ERecipe.epochs} ep" if paper.method == "lora" else "—",
            }
            rows.append(row | {E2E_NAMES[m]: _paper_cell(paper, m, E2E_DIGITS[m]) for m in E2E_METRICS})
    ranks = sorted({int(r) for r in e2e.loc[e2e["r"].notna(), "r"]} & set(TABLE18) - {4})
    if "gpt2-medium" in references:
        for r in ranks:
            row = {"Model": "paper: GPT-2 M", "Method": f"LoRA r={r} (Table 18)", "Trainable": "—", "Budget": "—"}
            rows.append(row | {E2E_NAMES[m]: _fixed(TABLE18[r][m].value, TABLE18_DIGITS[m]) for m in E2E_METRICS})
    caption = " ".join(
        [
            models_note(e2e),
            "E2E NLG test set, one hypothesis per meaning representation against all its references (official "
            "metrics); BLEU, METEOR and ROUGE-L x100, NIST and CIDEr as computed.",
            SPREAD_NOTE,
            "The paper's LoRA rows are the mean of 3 seeds; ours the median. Its GPT-2 M LoRA count (0.35M) is "
            "printed in the paper; r=4 on Wq, Wv of GPT-2 M is 393,216 parameters.",
            "Budget: epochs (train.epochs) · optimizer steps each seed took; the paper trains LoRA for 5 epochs "
            '(its Table 11). "scoring pending": the run finished training and decoding but its test set was not '
            "scored yet (no Java where it ran; python -m experiments.e2e_eval --run DIR scores it).",
        ]
    )
    return Table("e2e", "E2E NLG (paper Table 3 layout)", caption, pd.DataFrame(rows), _e2e_long(e2e))


def _paper_digits(metric: str, source: str) -> int:
    return (TABLE18_DIGITS if "Table 18" in source else E2E_DIGITS)[metric]


def e2e_vs_paper_table(groups: pd.DataFrame) -> Table | None:
    """Each E2E configuration that has a paper counterpart, metric by metric, with the difference."""
    e2e = groups[groups["family"] == "e2e"]
    if e2e.empty:
        return None
    data = _e2e_long(e2e)
    data = data[data["paper_source"].notna()]
    if data.empty:
        return None
    display = pd.DataFrame(
        {
            "Model": data["model"],
            "Method": data["variant"],
            "Metric": data["metric"].map(E2E_NAMES),
            "Ours": [
                cell_from(row, digits=E2E_DIGITS[m])
                for m, (_, row) in zip(data["metric"], _as_cells(data).iterrows(), strict=True)
            ],
            "Paper": [
                _fixed(v, _paper_digits(m, src))
                + (f" ±{_fixed(s, _paper_digits(m, src))}" if s is not None and not math.isnan(s) else "")
                + f" ({src})"
                for v, s, src, m in zip(
                    data["paper"], data["paper_spread"], data["paper_source"], data["metric"], strict=True
                )
            ],
            "Δ (ours − paper)": [
                f"{d:+.{E2E_DIGITS[m]}f}" if d is not None and not math.isnan(d) else "—"
                for d, m in zip(data["delta"], data["metric"], strict=True)
            ],
        }
    )
    caption = " ".join([models_note(e2e), SPREAD_NOTE, "Δ = our median − the paper's number."])
    return Table("e2e_vs_paper", "E2E: ours vs the paper, metric by metric", caption, display, data)


# --- every configuration, failures, incomplete runs ---------------------------------------------------------


def configurations_table(groups: pd.DataFrame) -> Table | None:
    """Every configuration and task with its seeds, whatever table it also appears in."""
    if groups.empty:
        return None
    ordered = groups.assign(_t=groups["task"].map(_task_order), _o=groups["method"].map(_method_order))
    ordered = ordered.sort_values(["family", "model", "_t", "_o", "targets", "r", "variant"], na_position="first")
    display = pd.DataFrame(
        {
            "Family": ordered["family"],
            "Model": ordered["model"],
            "Task": ordered["task"].map(lambda t: TASK_NAMES.get(t, t)),
            "Configuration": ordered["variant"],
            "Start": ordered["init_from"],
            "Metric": [_metric_label(g) for _, g in ordered.iterrows()],
            "Median": [f"{v:.2f}" if not math.isnan(v) else "—" for v in ordered["median"]],
            "Min–max": [
                f"{lo:.2f}–{hi:.2f}" if not math.isnan(lo) else "—"
                for lo, hi in zip(ordered["min"], ordered["max"], strict=True)
            ],
            "n": ordered["n"],
            "Failed": ordered["n_failed"],
            "Incomplete": ordered["n_incomplete"],
            "Scoring pending": ordered["n_pending"],
            "Seeds": ordered["seeds"],
            "Trainable": [
                format_count(lo, hi)
                for lo, hi in zip(ordered["trainable_params"], ordered["trainable_params_max"], strict=True)
            ],
            "+ head": [
                format_count(lo, hi)
                for lo, hi in zip(
                    ordered["trainable_params_with_head"], ordered["trainable_params_with_head_max"], strict=True
                )
            ],
        }
    )
    data = ordered.drop(columns=[c for c in ordered.columns if c.endswith("_key") or c.startswith("_")])
    caption = " ".join(
        [
            models_note(groups),
            "One row per configuration and task; runs that differ only in seed are pooled, anything else is kept "
            "apart. Scores in display units (GLUE x100; E2E BLEU x100).",
        ]
    )
    return Table("configurations", "All configurations", caption, display.reset_index(drop=True), data)


def _first_line(text: Any, limit: int = 160) -> str:
    line = str(text or "").strip().splitlines()[0] if str(text or "").strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def failures_table(runs: pd.DataFrame) -> Table | None:
    """Every failed or unreadable run, with its error, so none disappears from the report."""
    failed = runs[runs["status"].isin(["failed", "unreadable"])]
    if failed.empty:
        return None
    display = pd.DataFrame(
        {
            "Status": failed["status"],
            "Family": failed["family"].fillna("?"),
            "Model": failed["model"].fillna("?"),
            "Task": failed["task"].fillna("?"),
            "Configuration": failed["variant"].fillna("(config did not resolve)"),
            "Seed": failed["seed"].astype("string").fillna("?"),
            "Error": failed["error"].map(_first_line),
            "File": failed["path"],
        }
    )
    data = failed.drop(columns=[c for c in failed.columns if c.endswith("_key")])
    caption = (
        "Runs that raised inside a multirun (failure.json, written by the runner) or whose file could not be read."
    )
    return Table("failures", "Failed runs", caption, display.reset_index(drop=True), data)


def incomplete_table(runs: pd.DataFrame) -> Table | None:
    """Run directories with neither result nor failure: still running, or killed (rerun the same command)."""
    incomplete = runs[runs["status"] == "incomplete"]
    if incomplete.empty:
        return None
    display = pd.DataFrame(
        {
            "Family": incomplete["family"],
            "Model": incomplete["model"],
            "Task": incomplete["task"],
            "Configuration": incomplete["variant"].fillna("(no finished seed of this configuration)"),
            "Seed": incomplete["seed"].astype("string"),
            "Directory": incomplete["path"],
        }
    )
    data = incomplete.drop(columns=[c for c in incomplete.columns if c.endswith("_key")])
    caption = (
        "Run directories without result.json or failure.json: running now, or killed. The same command resumes "
        "from the checkpoint in the directory."
    )
    return Table("incomplete", "Incomplete runs", caption, display.reset_index(drop=True), data)
