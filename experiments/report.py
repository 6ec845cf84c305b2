"""The comparison report: ``python -m experiments.report [DIRS...] [--out DIR] [--include-quick] [--tracked-only]``.

Reads every result.json, failure.json and unfinished run directory under DIRS (default ``runs``, where runs
land; folders named ``quick`` below them are skipped unless ``--include-quick`` or named directly) and the
Section-7 analyses (analysis.json) there, and writes ``<out>/report.md`` (default ``runs``) with its tables
as CSV and LaTeX and its figures as PNG under ``<out>/report/``. It also prints the per-configuration table.

The same runs give the same bytes (no timestamp, sorted input, PNGs without version metadata), so the
committed report of the reference runs, ``--tracked-only results --out results`` (``make reference-report``),
changes only when the committed runs do: ``--tracked-only`` reads only files git tracks, not local runs.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from experiments.reporting import plots, tables
from experiments.reporting.aggregate import aggregate, format_count
from experiments.reporting.analyses import analysis_markdown, find_analyses, read_analysis
from experiments.reporting.curves import dev_curves_by_task, training_curves
from experiments.reporting.runs import load_runs
from experiments.reporting.tables import TASK_NAMES, Table
from experiments.schema import RUNS_DIR

__all__ = ["ReportFiles", "console_table", "latex_text", "main", "print_summary", "table_markdown", "write_report"]

REPORT_NAME = "report.md"
FILES_DIR = "report"
TABLE_NAMES = ("glue_methods", "glue_budget", "glue_significance", "glue_vs_paper", "rank", "alpha", "targets")
TABLE_NAMES += ("e2e", "e2e_vs_paper", "configurations", "failures", "incomplete")
FIGURE_NAMES = ("rank", "params", "targets", "dev_curves")
CURVES_DIR = "curves"  # report/curves/<model>_<task>_<id>.png: each configuration's training curves


@dataclass(frozen=True)
class ReportFiles:
    """What :func:`write_report` wrote."""

    markdown: Path
    tables: dict[str, tuple[Path, Path]]  # name -> (csv, tex)
    figures: dict[str, Path]
    runs: pd.DataFrame
    groups: pd.DataFrame


def _markdown_cell(value: object) -> str:
    text = "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def table_markdown(table: Table) -> str:
    """A table section: title, caption, the table, and where its CSV/LaTeX are."""
    display = table.display.map(_markdown_cell)
    return "\n\n".join(
        [
            f"### {table.title}",
            table.caption,
            display.to_markdown(index=False, disable_numparse=True),
            f"CSV: [{FILES_DIR}/{table.name}.csv]({FILES_DIR}/{table.name}.csv) · "
            f"LaTeX: [{FILES_DIR}/{table.name}.tex]({FILES_DIR}/{table.name}.tex)",
        ]
    )


_LATEX_SPECIAL = {c: f"\\{c}" for c in "&%$#_{}"} | {"~": r"\textasciitilde{}", "^": r"\^{}", "\\": r"\textbackslash{}"}


def latex_text(text: str) -> str:
    """Plain text for a LaTeX caption: markdown emphasis dropped, LaTeX's special characters escaped."""
    plain = re.sub(r"\*\*(.+?)\*\*|\*(.+?)\*", lambda m: m.group(1) or m.group(2), text)
    return "".join(_LATEX_SPECIAL.get(c, c) for c in plain)


def _write_table(table: Table, directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    csv, tex = directory / f"{table.name}.csv", directory / f"{table.name}.tex"
    table.data.to_csv(csv, index=False)
    caption = latex_text(f"{table.title}. {table.caption}")
    cells = table.display.fillna("").astype(str)
    tex.write_text(cells.to_latex(index=False, escape=True, caption=caption, label=f"tab:{table.name}"), "utf-8")
    return csv, tex


def _sources_line(directories: Sequence[Path], runs: pd.DataFrame, include_quick: bool, tracked_only: bool) -> str:
    counts = runs["status"].value_counts().to_dict() if len(runs) else {}
    summary = ", ".join(f"{counts.get(s, 0)} {s}" for s in ("completed", "failed", "incomplete", "unreadable"))
    quick = "included" if include_quick else "skipped (pass --include-quick, or name the folder)"
    which = "Committed runs" if tracked_only else "Runs"
    return f"{which} read from {', '.join(f'`{d}`' for d in directories)}: {summary}. `quick` folders: {quick}."


def _section(title: str, body: Iterable[str]) -> str:
    return "\n\n".join([f"## {title}", *body])


def _figure(figures: dict[str, Path], name: str, alt: str, out: Path) -> list[str]:
    path = figures.get(name)
    return [f"![{alt}]({Path(os.path.relpath(path, out)).as_posix()})"] if path else []


def _git_tracked(directories: Sequence[Path]) -> set[Path]:
    """Every file git tracks (or has staged) under ``directories``, and every folder above one, resolved."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--", *map(str, directories)], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError) as error:
        detail = (getattr(error, "stderr", None) or str(error)).strip()
        raise RuntimeError(
            f"--tracked-only asks git which files it tracks, and git could not say ({detail}); run the report "
            "inside the repository, or drop --tracked-only"
        ) from error
    files = {Path(name).resolve() for name in listed.split("\0") if name}
    return files | {parent for path in files for parent in path.parents}


def write_report(
    directories: Sequence[str | Path],
    out: str | Path = RUNS_DIR,
    include_quick: bool = False,
    tracked_only: bool = False,
) -> ReportFiles:
    """Read the runs and analyses under ``directories`` and write report.md, its CSV/LaTeX tables and PNGs.

    ``tracked_only`` leaves out what git does not track, so a committed report lists only committed runs.
    """
    out = Path(out)
    files_dir = out / FILES_DIR
    directories = [Path(d) for d in directories]
    tracked = _git_tracked(directories) if tracked_only else None

    def keep(path: Path) -> bool:
        return tracked is None or path.resolve() in tracked

    runs = load_runs(directories, include_quick, keep)
    analysis_files = [path for path in find_analyses(directories, include_quick) if keep(path)]
    groups = aggregate(runs)
    for stale in [f"{n}.{ext}" for n in TABLE_NAMES for ext in ("csv", "tex")] + [f"{n}.png" for n in FIGURE_NAMES]:
        (files_dir / stale).unlink(missing_ok=True)  # a table or figure with no data this time must not linger
    shutil.rmtree(files_dir / CURVES_DIR, ignore_errors=True)
    figures: dict[str, Path] = {}
    if not groups.empty:
        for name, plot in (("rank", plots.plot_rank), ("params", plots.plot_params), ("targets", plots.plot_targets)):
            path = plot(groups, files_dir / f"{name}.png")
            if path is not None:
                figures[name] = path
    dev_curves = plots.plot_dev_curves(dev_curves_by_task(runs, tables.in_table2), files_dir / "dev_curves.png")
    if dev_curves is not None:
        figures["dev_curves"] = dev_curves
    curve_sets = training_curves(runs)
    for curves in curve_sets:
        name = f"{CURVES_DIR}/{curves.key}"
        figures[name] = plots.plot_training_curves(curves, files_dir / f"{name}.png")

    built = {}
    if not groups.empty:
        built = {
            "glue_methods": tables.glue_methods_table(groups),
            "glue_budget": tables.glue_budget_table(groups),
            "glue_significance": tables.glue_significance_table(groups, runs),
            "glue_vs_paper": tables.glue_vs_paper_table(groups),
            "rank": tables.rank_table(groups),
            "alpha": tables.alpha_table(groups),
            "targets": tables.targets_table(groups),
            "e2e": tables.e2e_table(groups),
            "e2e_vs_paper": tables.e2e_vs_paper_table(groups),
            "configurations": tables.configurations_table(groups),
        }
    built["failures"] = tables.failures_table(runs) if len(runs) else None
    built["incomplete"] = tables.incomplete_table(runs) if len(runs) else None
    written = {name: _write_table(table, files_dir) for name, table in built.items() if table is not None}

    def block(name: str, missing: str) -> list[str]:
        table = built.get(name)
        return [table_markdown(table)] if table is not None else [f"*{missing}*"]

    analyses = [read_analysis(p) for p in analysis_files]
    analyses.sort(key=lambda a: (a.kind, a.title, str(a.path)))
    sections = [
        "# LoRA reproduction report",
        _sources_line(directories, runs, include_quick, tracked_only),
        "Paper numbers: Hu et al. 2021 (arXiv:2106.09685 v2), transcribed in `experiments/paper_numbers.py`. Every "
        "table names the model behind our numbers; where that is not the paper's model, the paper's columns are a "
        "reference, not a like-for-like comparison.",
        _section(
            "GLUE (paper Table 2)",
            block("glue_methods", "No GLUE runs in the paper's settings. Run `make glue` or `make sweep-methods`.")
            + ([table_markdown(built["glue_budget"])] if built.get("glue_budget") else [])
            + (
                [
                    "**Dev curves** of the Table 2 configurations (does the budget reach a plateau?): the dev score "
                    "after each epoch, the median over seeds with a band from the lowest to the highest seed; ★ marks "
                    "the epoch where that median peaks. The table's cells take each seed's own best epoch, so they "
                    "sit at or above the curve's peak.\n\n"
                    + _figure(figures, "dev_curves", "dev score vs epoch per task and method", out)[0]
                ]
                if "dev_curves" in figures
                else []
            )
            + ([table_markdown(built["glue_significance"])] if built.get("glue_significance") else [])
            + block("glue_vs_paper", "Nothing to set beside the paper yet."),
        ),
        _section(
            "Rank r (paper Tables 6 and 18)",
            block("rank", "No LoRA configuration was run at two or more ranks. Run `make sweep-rank`.")
            + _figure(figures, "rank", "score vs LoRA rank", out),
        ),
        _section(
            "Scaling rule for alpha",
            block("alpha", "No LoRA configuration was run under two or more alpha rules. Run `make sweep-alpha`."),
        ),
        _section(
            "Target matrices at a fixed budget (paper Table 5)",
            block("targets", "Fewer than two target sets at the Table 5 budget. Run `make sweep-targets`.")
            + _figure(figures, "targets", "score per adapted matrix set at a fixed budget", out),
        ),
        _section(
            "E2E NLG (paper Table 3)",
            block("e2e", "No E2E runs. Run `make e2e` or `make e2e-quick`.")
            + ([table_markdown(built["e2e_vs_paper"])] if built.get("e2e_vs_paper") else []),
        ),
        _section(
            "Score vs trainable parameters",
            _figure(figures, "params", "score vs trainable parameters by method", out) or ["*No scored runs.*"],
        ),
        _section(
            "Section 7 analyses",
            [analysis_markdown(a, out) for a in analyses]
            or ["*No analyses (runs/analysis/<name>/analysis.json, written by experiments/analysis.py).*"],
        ),
        _section(
            "Training curves",
            [
                f"**{TASK_NAMES.get(c.task, c.task)} · {c.model}**: {c.label}\n\n"
                + "".join(_figure(figures, f"{CURVES_DIR}/{c.key}", "training loss and metric vs step", out))
                for c in curve_sets
            ]
            or ["*No run logged its training (train_log.jsonl).*"],
        ),
        _section("Every configuration", block("configurations", "No runs found.")),
        _section(
            "Failed and incomplete runs",
            block("failures", "No failed runs.") + block("incomplete", "No incomplete runs."),
        ),
    ]
    out.mkdir(parents=True, exist_ok=True)
    markdown = out / REPORT_NAME
    markdown.write_text("\n\n".join(sections) + "\n", encoding="utf-8")
    return ReportFiles(markdown, written, figures, runs, groups)


def console_table(runs: pd.DataFrame) -> str:
    """The per-configuration table for a terminal: one line per configuration and task, failures included."""
    groups = aggregate(runs)
    lines = []
    if not groups.empty:
        ordered = groups.sort_values(["family", "model", "task", "method", "variant"])
        frame = pd.DataFrame(
            {
                "task": ordered["task"].map(lambda t: TASK_NAMES.get(t, t)),
                "model": ordered["model"],
                "configuration": ordered["variant"]
                + ordered["init_from"].map(lambda i: "" if i == "pretrained" else f"; from {i}"),
                "metric": ordered["main_metric"].fillna("?"),
                "median": ordered["median"].map(lambda v: "—" if math.isnan(v) else f"{v:.2f}"),
                "min–max": [
                    "—" if math.isnan(lo) else f"{lo:.2f}–{hi:.2f}"
                    for lo, hi in zip(ordered["min"], ordered["max"], strict=True)
                ],
                "n": ordered["n"],
                "failed": ordered["n_failed"],
                "incomplete": ordered["n_incomplete"],
                "trainable": [
                    format_count(lo, hi)
                    for lo, hi in zip(ordered["trainable_params"], ordered["trainable_params_max"], strict=True)
                ],
            }
        )
        align = ["left"] * 4 + ["right"] * 6
        lines.append(frame.to_markdown(index=False, tablefmt="simple", disable_numparse=True, colalign=align))
    listed = runs[runs["status"].isin(["failed", "unreadable"]) | runs["variant_key"].isna()] if len(runs) else runs
    for _, run in listed.iterrows():
        seed = f" seed {run['seed']}" if not pd.isna(run["seed"]) else ""
        error = (
            f": {str(run['error']).strip().splitlines()[0]}"
            if isinstance(run["error"], str) and run["error"].strip()
            else ""
        )
        lines.append(f"{run['status'].upper()}{seed} {run['path']}{error}")
    return "\n".join(lines) if lines else "no runs found"


def print_summary(directories: Iterable[str | Path], include_quick: bool = True) -> None:
    """Print the per-configuration console table of the runs under ``directories`` (used by experiments.quick)."""
    print(console_table(load_runs(directories, include_quick)))


def main(argv: list[str] | None = None) -> None:
    """Command line: write the report for DIRS and print the per-configuration table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="*", help=f"folders to search (default: {RUNS_DIR})")
    parser.add_argument("--out", default=RUNS_DIR, help=f"where report.md and report/ go (default: {RUNS_DIR})")
    parser.add_argument("--include-quick", action="store_true", help="also read folders named quick")
    parser.add_argument("--tracked-only", action="store_true", help="read only files git tracks (committed runs)")
    args = parser.parse_args(argv)
    if not args.dirs and not Path(RUNS_DIR).exists():  # a fresh clone: nothing run yet, nothing to write
        print(
            f"no runs yet: {RUNS_DIR}/ does not exist (the runners write there, e.g. make glue-quick); "
            "the committed reference report is results/report.md (make reference-report rebuilds it)"
        )
        return
    args.dirs = args.dirs or [RUNS_DIR]
    missing = [d for d in args.dirs if not Path(d).exists()]
    if missing:  # a mistyped folder must not overwrite the last report with an empty one
        parser.exit(
            1,
            f"error: {missing[0]} does not exist, so there are no runs to read; name folders that hold runs "
            f"(default: {RUNS_DIR}, where the runners write), e.g. python -m experiments.report runs; "
            "nothing was written\n",
        )
    files = write_report(args.dirs, args.out, args.include_quick, args.tracked_only)
    print(console_table(files.runs))
    where = files.markdown.parent / FILES_DIR
    print(f"\nreport: {files.markdown} ({len(files.tables)} tables, {len(files.figures)} figures in {where})")


if __name__ == "__main__":
    main()
