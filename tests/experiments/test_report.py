"""The comparison report on synthetic result files in the runners' format: medians, spreads and counts
against Python's statistics module, configurations kept apart, missing/failed/incomplete runs shown, the
paper's numbers (checked against ../shared/PAPER.md), plots, CSV/LaTeX files and the Section-7 analyses."""

from __future__ import annotations

import itertools
import json
import re
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from experiments import paper_numbers
from experiments.report import console_table, main, write_report
from experiments.reporting.aggregate import aggregate
from experiments.reporting.analyses import read_analysis
from experiments.reporting.runs import load_runs
from tests.experiments.synthetic_runs import make_incomplete_run, write_failed_run, write_run

PAPER_MD = Path(__file__).resolve().parents[2].parent / "shared" / "PAPER.md"
MINILM = "model=minilm-l6-h384"
SST2_LORA = [0.90, 0.92, 0.91, 0.95, 0.89]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png(size: tuple[int, int], path: Path) -> Path:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(size[0] / 100, size[1] / 100))
    figure.subplots().plot([0, 1], [1, 0])
    figure.savefig(path, dpi=100)
    return path


def _hydra_files(run_dir: Path) -> None:
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text("seed: 0\n")
    (run_dir / "glue.log").write_text("")


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("results")
    # Table 2 cells: LoRA on SST-2 (5 seeds), RTE (3); full FT on SST-2 only; BitFit with one failed seed.
    for seed, score in enumerate(SST2_LORA):
        run_dir = write_run(root, (MINILM, "task=sst2", "method=lora"), seed, score, trainable=73728, head=148225)
        _hydra_files(run_dir)  # Hydra's job folder is the run directory
    for seed, score in enumerate([0.70, 0.60, 0.65]):
        write_run(root, (MINILM, "task=rte", "method=lora"), seed, score, trainable=73728, head=148225)
    write_run(root, (MINILM, "task=sst2", "method=full_ft"), 0, 0.93, trainable=22_000_000)
    write_run(root, (MINILM, "task=sst2", "method=bitfit"), 0, 0.88, trainable=30_000)
    write_failed_run(root, (MINILM, "task=sst2", "method=bitfit"), 1, "CUDA out of memory")
    write_failed_run(root, (MINILM, "task=rte", "method=bitfit"), 0, "disk full")
    make_incomplete_run(root, (MINILM, "task=rte", "method=lora"), 3)
    # Settings that must not be pooled with the cells above.
    write_run(root, (MINILM, "task=sst2", "method=lora", "preset=repo"), 0, 0.50)
    write_run(root, (MINILM, "task=sst2", "method=lora", "train.lr=1e-4"), 0, 0.51)
    # Rank sweep (alpha fixed at the recipe's 8) and the alpha rules, on SST-2.
    for r, score in ((1, 0.80), (2, 0.81), (4, 0.82)):
        write_run(root, (MINILM, "task=sst2", f"method.r={r}"), 0, score, trainable=9216 * r)
    for rule in ("equal_r", "rslora"):
        for r in (2, 32):
            write_run(root, (MINILM, "task=sst2", "sweep=alpha", f"alpha_rule={rule}", f"method.r={r}"), 0, 0.7)
    # Table 5 budget pairs on MRPC.
    for budget, score in (("wq_r8", 0.84), ("wk_r8", 0.83), ("all_r2", 0.86)):
        write_run(root, (MINILM, "task=mrpc", "sweep=targets", f"budget={budget}"), 0, score, trainable=73728)
    # E2E: LoRA at the recipe's r (Table 3) and at r=2 (Table 18); full FT.
    metrics = {"BLEU": 0.70, "NIST": 8.5, "METEOR": 0.46, "ROUGE_L": 0.71, "CIDEr": 2.5}
    for seed, bleu in enumerate([0.69, 0.70, 0.72]):
        write_run(root, ("model=smollm2-135m",), seed, bleu, family="e2e", e2e_scores=metrics | {"BLEU": bleu})
    write_run(root, ("model=smollm2-135m", "method.r=2"), 0, 0.66, family="e2e")
    write_run(root, ("model=smollm2-135m", "method=full_ft"), 0, 0.67, family="e2e")
    # Things the report must skip, or show as broken. A run directory holding only Hydra's files is one refused
    # before the runner took it (a missing data folder): nothing ran, so it is not an incomplete run.
    _hydra_files(root / "glue" / "minilm-l6-h384" / "sst2" / "lora_r8_a8_Wq-Wv_paper_0123abcd" / "seed0")
    write_run(root / "quick", (MINILM, "task=cola", "method=lora"), 0, 0.3)
    (root / "glue" / "broken").mkdir(parents=True)
    (root / "glue" / "broken" / "result.json").write_text("{not json")
    unresolved = root / "sweeps" / "2026-01-01_00-00-00" / "1"  # a sweep job refused before it had a run dir
    unresolved.mkdir(parents=True)
    (unresolved / "failure.json").write_text(json.dumps({"status": "failed", "family": "glue", "error": "bad yaml"}))
    return root


@pytest.fixture(scope="module")
def analysis_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("analyses") / "analysis"
    good = root / "subspace_r8_r64"
    (good / "figs").mkdir(parents=True)
    _png((320, 240), good / "figs" / "phi.png")
    pd.DataFrame({"i": [1, 2], "phi": [0.9, 0.4]}).to_csv(good / "phi.csv", index=False)
    summary = "# Findings\n\nThe top direction overlaps ([heatmap](figs/phi.png)).\n\n```\n# not a heading\n```"
    (good / "analysis.json").write_text(
        json.dumps(
            {
                "kind": "subspace_similarity",
                "title": "Subspace similarity, r=8 vs r=64",
                "model": "minilm-l6-h384",
                "task": "sst2",
                "summary_markdown": summary,
                "figures": ["figs/phi.png"],
                "tables": ["phi.csv"],
            }
        )
    )
    bad = root / "amp"
    bad.mkdir()
    (bad / "analysis.json").write_text(
        json.dumps({"kind": "amplify", "title": "Amplification", "model": "m", "task": "t", "figures": ["gone.png"]})
    )
    return root


@pytest.fixture(scope="module")
def report(results: Path, analysis_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    return write_report([results, analysis_dir.parent], tmp_path_factory.mktemp("out"))


def _group(groups: pd.DataFrame, **where) -> pd.Series:
    mask = np.ones(len(groups), dtype=bool)
    for key, value in where.items():
        mask &= (groups[key] == value).to_numpy()
    (index,) = np.flatnonzero(mask)
    return groups.iloc[index]


def _row(table: pd.DataFrame, **where) -> pd.Series:
    return _group(table, **where)


def _section(markdown: str, start: str, end: str) -> str:
    return markdown[markdown.index(start) : markdown.index(end)]


def _table_rows(section: str) -> list[dict[str, str]]:
    """The first markdown table in ``section`` as dicts keyed by its header."""
    lines = list(
        itertools.takewhile(
            lambda line: line.startswith("|"),
            itertools.dropwhile(lambda line: not line.startswith("|"), section.splitlines()),
        )
    )
    split = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines]
    return [dict(zip(split[0], row, strict=True)) for row in split[2:]]


# --- aggregation ------------------------------------------------------------------------------------------


def test_median_spread_and_count_over_seeds(results: Path) -> None:
    groups = aggregate(load_runs([results]))
    lora = _group(groups, task="sst2", variant="LoRA r=8 α=8 Wq+Wv, preset paper")
    scores = [100 * s for s in SST2_LORA]
    assert lora["median"] == pytest.approx(statistics.median(scores))
    assert (lora["min"], lora["max"]) == (pytest.approx(min(scores)), pytest.approx(max(scores)))
    assert lora["spread"] == pytest.approx((max(scores) - min(scores)) / 2)
    assert (lora["n"], lora["n_failed"], lora["n_incomplete"], lora["seeds"]) == (5, 0, 0, "0 1 2 3 4")
    assert (lora["trainable_params"], lora["trainable_params_with_head"]) == (73728, 73728 + 148225)


def test_runs_that_differ_in_more_than_the_seed_are_kept_apart(results: Path) -> None:
    sst2 = aggregate(load_runs([results])).query("task == 'sst2' and method == 'lora'")
    variants = set(sst2["variant"])
    assert "LoRA r=8 α=16 Wq+Wv, preset repo" in variants  # the scripts' alpha, another preset
    assert "LoRA r=8 α=8 Wq+Wv, preset paper; train.lr=0.0001" in variants  # an lr override is named
    assert {"LoRA r=1 α=8 Wq+Wv, preset paper", "LoRA r=2 α=2 Wq+Wv, preset paper"} <= variants
    assert "LoRA r=2 α=8 Wq+Wv rsLoRA, preset paper" in variants
    assert sst2["variant_key"].is_unique and sst2["variant"].is_unique


def test_failed_and_incomplete_seeds_are_counted_in_their_cells(results: Path) -> None:
    groups = aggregate(load_runs([results]))
    bitfit = _group(groups, task="sst2", method="bitfit")
    assert (bitfit["n"], bitfit["n_failed"], bitfit["failed_seeds"]) == (1, 1, "1")
    only_failed = _group(groups, task="rte", method="bitfit")
    assert only_failed["n"] == 0 and np.isnan(only_failed["median"]) and only_failed["n_failed"] == 1
    rte = _group(groups, task="rte", variant="LoRA r=8 α=8 Wq+Wv, preset paper")
    assert (rte["n"], rte["n_incomplete"], rte["median"]) == (3, 1, pytest.approx(65.0))


def test_what_is_read_and_what_is_skipped(results: Path) -> None:
    runs = load_runs([results])
    assert not runs["path"].str.contains("0123abcd").any()  # only Hydra's files: no run
    assert runs["path"].str.contains("sweeps/2026-01-01_00-00-00/1").sum() == 1
    assert not runs["path"].str.contains("/quick/").any()
    assert load_runs([results], include_quick=True)["path"].str.contains("/quick/").sum() == 1
    assert load_runs([results / "quick"])["status"].tolist() == ["completed"]  # named directly: read
    statuses = runs["status"].value_counts().to_dict()
    assert statuses["unreadable"] == 1 and statuses["incomplete"] == 1 and statuses["failed"] == 3


# --- tables -----------------------------------------------------------------------------------------------


def test_table2_layout_with_missing_failed_and_paper_rows(report) -> None:
    section = _section(report.markdown.read_text(), "### GLUE: LoRA vs full", "### GLUE: training budget")
    rows = {(row["Model"], row["Method"]): row for row in _table_rows(section)}
    assert list(next(iter(rows.values()))) == ["Model", "Method", "Trainable", "+ head", "SST-2", "MRPC", "RTE", "Avg."]
    lora = rows[("minilm-l6-h384", "LoRA r=8 α=8 Wq+Wv, preset paper")]
    assert (lora["Trainable"], lora["+ head"]) == ("73,728", "0.222M")
    assert (lora["SST-2"], lora["RTE"], lora["Avg."]) == (
        "91.0 (89.0–95.0; n=5)",  # the median and the lowest and highest seed, not a symmetric ±
        "65.0 (60.0–70.0; n=3; 1 incomplete)",
        "— (2/8 tasks)",
    )
    assert lora["MRPC"] == "missing"  # MRPC ran only in the target sweep, not in the paper's setting
    full_ft = rows[("minilm-l6-h384", "Full FT, preset paper")]
    assert (full_ft["SST-2"], full_ft["RTE"]) == ("93.0 (n=1)", "missing")
    bitfit = rows[("minilm-l6-h384", "BitFit, preset paper")]
    assert (bitfit["SST-2"], bitfit["RTE"]) == ("88.0 (n=1; 1 failed)", "1 failed")
    paper = rows[("paper: RoBERTa-base", "LoRA (Table 2)")]
    assert (paper["SST-2"], paper["MRPC"], paper["RTE"], paper["Avg."]) == (
        "95.1 ±0.2",
        "89.7 ±0.7",
        "86.6 ±0.7",
        "87.2",
    )
    assert rows[("paper: RoBERTa-base", "BitFit (Table 2, from prior work)")]["Trainable"] == "0.1M"
    assert (
        "stand-in for RoBERTa-base" in section and "Tasks with no run at all: MNLI, CoLA, QNLI, QQP, STS-B." in section
    )
    # LoRA in the paper's setting only (the recipe's r and alpha, in either preset, any other override named);
    # other ranks, alpha rules and target sets are in their own tables.
    lora_rows = sorted(method for model, method in rows if model == "minilm-l6-h384" and method.startswith("LoRA"))
    assert lora_rows == [
        "LoRA r=8 α=16 Wq+Wv, preset repo",
        "LoRA r=8 α=8 Wq+Wv, preset paper",
        "LoRA r=8 α=8 Wq+Wv, preset paper; train.lr=0.0001",
    ]


def test_runs_started_from_an_adapter_are_marked_and_never_pooled_with_pretrained_ones(tmp_path: Path) -> None:
    mnli = "method.init_adapter=/runs/glue/minilm-l6-h384/mnli/lora_r8/seed0/adapter"
    write_run(tmp_path, (MINILM, "task=mrpc"), 0, 0.80)
    write_run(tmp_path, (MINILM, "task=mrpc", mnli), 0, 0.90)
    write_run(tmp_path, (MINILM, "task=sst2"), 0, 0.85)
    files = write_report([tmp_path], tmp_path / "out")
    assert sorted(files.groups.loc[files.groups["task"] == "mrpc", "init_from"]) == ["mnli adapter", "pretrained"]
    section = _section(files.markdown.read_text(), "### GLUE: LoRA vs full", "### GLUE: training budget")
    rows = {row["Method"]: row for row in _table_rows(section) if row["Model"] == "minilm-l6-h384"}
    assert rows["LoRA r=8 α=8 Wq+Wv, preset paper"]["MRPC"] == "80.0 (n=1)"
    assert rows["LoRA r=8 α=8 Wq+Wv, preset paper"]["SST-2"] == "85.0 (n=1)"
    assert rows["LoRA r=8 α=8 Wq+Wv, preset paper (other start)"]["MRPC"] == "90.0 (n=1) †"


def test_table2_rows_span_tasks_of_different_budgets_and_never_pool_two_budgets(tmp_path: Path) -> None:
    # Each task has one epoch budget for every method (conf/experiment/minilm_*.yaml): RTE 20, STS-B 10.
    for method, steps in (("lora", 1560), ("full_ft", 3120)):
        for seed in range(3):  # the best epoch is the 2nd, 3rd, 4th
            scores = [0.5 + 0.1 * (epoch == seed + 1) for epoch in range(4)]
            write_run(tmp_path, (MINILM, "task=rte", f"method={method}", "train.epochs=20"), seed, 0, steps=steps,
                      epoch_scores=scores)  # fmt: skip
        write_run(tmp_path, (MINILM, "task=stsb", f"method={method}", "train.epochs=10"), 0, 0.8, steps=900)
    write_run(tmp_path, (MINILM, "task=rte", "method=lora", "train.epochs=5"), 0, 0.4, steps=390)  # another budget
    files = write_report([tmp_path], tmp_path / "out")
    markdown = files.markdown.read_text()
    section = _section(markdown, "### GLUE: LoRA vs full", "### GLUE: training budget")
    rows = {row["Method"]: row for row in _table_rows(section) if row["Model"] == "minilm-l6-h384"}
    assert list(rows) == [
        "LoRA r=8 α=8 Wq+Wv, preset paper",
        "LoRA r=8 α=8 Wq+Wv, preset paper (other budget: 5 epochs)",
        "Full FT, preset paper",
    ]
    lora = rows["LoRA r=8 α=8 Wq+Wv, preset paper"]
    assert (lora["RTE"], lora["STS-B"]) == ("60.0 (60.0–60.0; n=3)", "80.0 (n=1)")  # one row across the tasks' budgets
    other = rows["LoRA r=8 α=8 Wq+Wv, preset paper (other budget: 5 epochs)"]
    assert (other["RTE"], other["STS-B"]) == ("40.0 (n=1)", "missing")  # the 5-epoch run is not pooled
    assert "Training budget, epochs: RTE 5 (LoRA) / 20 (Full FT, LoRA), STS-B 10 " in section
    assert "(the paper's RoBERTa LoRA recipe: RTE 80, STS-B 40)" in section
    budget = {
        row["Method"]: row for row in _table_rows(_section(markdown, "### GLUE: training budget", "### GLUE: ours"))
    }
    assert list(budget) == list(rows)
    assert budget["LoRA r=8 α=8 Wq+Wv, preset paper"]["RTE"] == "20 ep · 1,560 steps · best ep. 3 (2–4)"
    assert budget["LoRA r=8 α=8 Wq+Wv, preset paper (other budget: 5 epochs)"]["RTE"] == "5 ep · 390 steps · best ep. 1"
    assert budget["Full FT, preset paper"]["STS-B"] == "10 ep · 900 steps · best ep. 1"
    data = pd.read_csv(files.tables["glue_budget"][0])
    assert sorted(data.loc[data["task"] == "rte", "epochs"]) == [5, 20, 20]


def test_of_two_budgets_with_as_many_seeds_the_longer_takes_the_first_row(tmp_path: Path) -> None:
    for epochs, score in (("5", 0.4), ("20", 0.6)):
        write_run(tmp_path, (MINILM, "task=rte", f"train.epochs={epochs}"), 0, score)
    write_run(tmp_path, (MINILM, "task=rte", "method=full_ft", "train.epochs=20"), 0, 0.7)
    section = _section(write_report([tmp_path], tmp_path / "out").markdown.read_text(), "### GLUE: LoRA vs full",
                       "### GLUE: training budget")  # fmt: skip
    rows = {row["Method"]: row["RTE"] for row in _table_rows(section) if row["Model"] == "minilm-l6-h384"}
    assert rows == {
        "LoRA r=8 α=8 Wq+Wv, preset paper": "60.0 (n=1)",  # beside full FT's 20 epochs, not the 5-epoch run
        "LoRA r=8 α=8 Wq+Wv, preset paper (other budget: 5 epochs)": "40.0 (n=1)",
        "Full FT, preset paper": "70.0 (n=1)",
    }


RTE_LORA = [0.61, 0.63, 0.60, 0.64, 0.62]
RTE_FULL_FT = [0.58, 0.59, 0.615, 0.57, 0.605]
SEED_NOISE = "### GLUE: LoRA − full FT and LoRA − BitFit against seed noise"


def test_seed_noise_p_is_exact_when_scores_tie(tmp_path: Path) -> None:
    # 3 vs 3 seeds, every LoRA score below every full FT score, two LoRA seeds tied: U = 0. Of the 20 ways to
    # split the six scores into two groups of three, one gives U <= 0 (the three lowest first), so the lower tail
    # is 1/20 and p = 2 x 1/20 exactly; the normal approximation would read 0.077.
    for seed, (lora, full_ft) in enumerate(zip((0.873, 0.874, 0.874), (0.888, 0.891, 0.897), strict=True)):
        write_run(tmp_path, (MINILM, "task=sst2", "method=lora", "train.epochs=2"), seed, lora)
        write_run(tmp_path, (MINILM, "task=sst2", "method=full_ft", "train.epochs=2"), seed, full_ft)
    files = write_report([tmp_path], tmp_path / "out")
    versus = _row(pd.read_csv(files.tables["glue_significance"][0]), task="sst2", second_method="full_ft")
    assert (versus["u"], versus["p"]) == (0.0, pytest.approx(0.1))


def test_seed_noise_table_compares_every_budget_two_methods_share_by_mann_whitney(tmp_path: Path) -> None:
    from scipy.stats import mannwhitneyu

    for seed, (lora, full_ft) in enumerate(zip(RTE_LORA, RTE_FULL_FT, strict=True)):
        write_run(tmp_path, (MINILM, "task=rte", "method=lora", "train.epochs=20"), seed, lora)
        write_run(tmp_path, (MINILM, "task=rte", "method=full_ft", "train.epochs=20"), seed, full_ft)
        write_run(tmp_path, (MINILM, "task=rte", "method.r=4"), seed, 0.90 + seed / 100)  # not a Table 2 setting
    write_run(tmp_path, (MINILM, "task=rte", "method=bitfit", "train.epochs=20"), 0, 0.55)  # one seed
    for seed, score in enumerate([0.40, 0.41]):  # LoRA at another budget: Table 2's second LoRA row
        write_run(tmp_path, (MINILM, "task=rte", "method=lora", "train.epochs=5"), seed, score)
    write_run(tmp_path, (MINILM, "task=rte", "method=full_ft", "train.epochs=5"), 0, 0.45)
    write_run(tmp_path, (MINILM, "task=rte", "method=bitfit", "train.epochs=40"), 0, 0.57)  # only BitFit has 40
    mnli = "method.init_adapter=/runs/glue/minilm-l6-h384/mnli/lora_r8/seed0/adapter"
    for seed in (0, 1):  # LoRA from MNLI's adapter (†) at 20 epochs: full FT and BitFit started pretrained
        write_run(tmp_path, (MINILM, "task=rte", "method=lora", "train.epochs=20", mnli), seed, 0.70)
    files = write_report([tmp_path], tmp_path / "out")
    markdown = files.markdown.read_text()
    assert markdown.index("### GLUE: training budget") < markdown.index(SEED_NOISE) < markdown.index("### GLUE: ours")
    section = _section(markdown, SEED_NOISE, "### GLUE: ours")
    assert "seeds are not paired" in section and "smallest possible p is 2/252 ≈ 0.008 with 5 vs 5" in section
    table = _table_rows(section)
    keys = [(row["Task"], row["Epochs"], row["First"], row["Second"]) for row in table]
    lora_label = "LoRA r=8 α=8 Wq+Wv, preset paper"  # the budget is in its own column, not in the labels
    assert keys == [
        ("RTE", "20", lora_label, "Full FT, preset paper"),
        ("RTE", "5", lora_label, "Full FT, preset paper"),  # LoRA's 5-epoch (spilled) row, at full FT's 5 epochs
        # BitFit's first row holds its 40-epoch run (as many seeds, longer), which no LoRA run matches
        ("RTE", "20", lora_label, "BitFit, preset paper"),
    ]  # and no row for the runs from MNLI's adapter: no other method started there
    five = table[1]
    assert (five["Δ median (first − second)"], five["n (first / second)"]) == ("-4.50", "2 / 1")
    rows = {(row["Task"], row["Second"]): row for row in table if row["Epochs"] == "20"}
    lora, full_ft = [100 * s for s in RTE_LORA], [100 * s for s in RTE_FULL_FT]
    expected = mannwhitneyu(lora, full_ft, alternative="two-sided", method="exact").pvalue  # no ties: scipy exact
    assert rows[("RTE", "Full FT, preset paper")] == {
        "Model": "minilm-l6-h384",
        "Task": "RTE",
        "Epochs": "20",
        "First": lora_label,  # the 20-epoch cells, not r=4
        "Second": "Full FT, preset paper",
        "Δ median (first − second)": f"{statistics.median(lora) - statistics.median(full_ft):+.2f}",
        "n (first / second)": "5 / 5",
        "p (Mann–Whitney U)": f"{expected:.3f}",
    }
    assert rows[("RTE", "Full FT, preset paper")]["Δ median (first − second)"] == "+3.00"
    bitfit = rows[("RTE", "BitFit, preset paper")]
    assert (bitfit["Δ median (first − second)"], bitfit["n (first / second)"]) == ("+7.00", "5 / 1")
    assert bitfit["p (Mann–Whitney U)"] == "—"  # one seed on a side: no test
    data = pd.read_csv(files.tables["glue_significance"][0])
    versus = _row(data, task="rte", second_method="full_ft", epochs=20)
    assert versus["p"] == pytest.approx(expected) and versus["delta"] == pytest.approx(3.0)
    assert (versus["epochs"], versus["n_first"], versus["n_second"]) == (20, 5, 5)
    assert [float(v) for v in versus["scores_first"].split()] == pytest.approx(lora)
    assert np.isnan(_row(data, task="rte", second_method="bitfit", epochs=20)["p"])
    assert "\\caption{" in files.tables["glue_significance"][1].read_text()


def test_ours_vs_paper_differences(report) -> None:
    data = pd.read_csv(report.tables["glue_vs_paper"][0])
    lora = _row(data, task="sst2", variant="LoRA r=8 α=8 Wq+Wv, preset paper")
    assert lora["paper"] == 95.1 and lora["delta"] == pytest.approx(91.0 - 95.1)
    full = _row(data, task="sst2", method="full_ft")
    assert (full["paper"], full["paper_model"]) == (94.8, "roberta-base") and "prior work" in full["paper_source"]
    assert _row(data, task="rte", method="lora")["delta"] == pytest.approx(65.0 - 86.6)
    assert _row(data, task="sst2", method="bitfit")["paper"] == 93.7


def test_paper_row_follows_the_models_size() -> None:
    from experiments.reporting.tables import paper_model

    assert paper_model("glue", "roberta-large", "roberta-large") == "roberta-large"
    assert paper_model("glue", "minilm-l6-h384", "roberta-base") == "roberta-base"
    assert paper_model("e2e", "gpt2-large", "gpt2-medium") == "gpt2-large"
    assert paper_model("e2e", "smollm2-135m", "gpt2-medium") == "gpt2-medium"


def test_rank_table(report) -> None:
    data = pd.read_csv(report.tables["rank"][0])
    sst2 = data[(data["task"] == "sst2") & (data["rank_series"] == "LoRA α=8 Wq+Wv, preset paper")]
    assert dict(zip(sst2["r"], sst2["median"], strict=True)) == pytest.approx({1: 80.0, 2: 81.0, 4: 82.0, 8: 91.0})
    e2e = data[data["task"] == "e2e"].set_index("r")
    assert e2e.loc[2, "paper_table18_bleu"] == 69.17 and e2e.loc[4, "paper_table18_bleu"] == 70.38
    md = report.markdown.read_text()
    section = md[md.index("### Score vs LoRA rank") : md.index("## Scaling rule")]
    rows = {(row["Task"], row["Configuration"]): row for row in _table_rows(section)}
    sst2 = rows[("SST-2", "LoRA α=8 Wq+Wv, preset paper")]
    cells = [sst2[f"r={r}"] for r in (1, 2, 4, 8, 16, 32, 64)]
    assert cells == ["80.0 (n=1)", "81.0 (n=1)", "82.0 (n=1)", "91.0 (89.0–95.0; n=5)", "missing", "missing", "missing"]
    assert rows[("E2E", "LoRA Wq+Wv, α=32 (Table 18)")]["r=64"] == "69.24"
    assert "paper: GPT-2 M" in section and "68.72" in section


def test_alpha_table_rules(report) -> None:
    data = pd.read_csv(report.tables["alpha"][0])
    rules = data.groupby("rule")["r"].apply(sorted).to_dict()
    assert rules == {"fixed α=8": [1, 2, 4, 8], "α = r": [2, 8, 32], "rsLoRA α=8": [2, 32]}
    assert set(data.loc[data["rule"] == "α = r", "lora_alpha"]) == {2.0, 8.0, 32.0}


def test_targets_table_in_table_5_order_with_the_papers_numbers(report) -> None:
    rows = _table_rows(_section(report.markdown.read_text(), "### Which weight matrices", "## E2E NLG"))
    assert [row["Targets (r)"] for row in rows] == [
        "Wq (r=8)",
        "Wk (r=8)",
        "Wv (r=8)",
        "Wo (r=8)",
        "Wq+Wk (r=4)",
        "Wq+Wv (r=4)",
        "Wq+Wk+Wv+Wo (r=2)",
    ]
    by_target = {row["Targets (r)"]: row for row in rows}
    assert by_target["Wk (r=8)"]["MRPC"] == "83.0 (n=1)" and by_target["Wo (r=8)"]["MRPC"] == "missing"
    assert by_target["Wq+Wv (r=4)"]["SST-2"] == "82.0 (n=1)"  # the rank sweep's r=4 run spends the same budget
    assert by_target["Wq+Wk+Wv+Wo (r=2)"]["paper MNLI (GPT-3)"] == "91.7"
    assert by_target["Wq (r=8)"]["paper WikiSQL (GPT-3)"] == "70.4"


def test_targets_table_rows_span_tasks_of_different_budgets_and_never_pool_two_budgets(tmp_path: Path) -> None:
    # The Table 5 sweep on two tasks, each at its own Table 2 budget (MRPC 20 epochs, STS-B 10), and two more
    # seeds of one MRPC pair at 5 epochs: MRPC's column keeps 20 epochs (3 seeds across the block against 2)
    # in every row, though that pair alone has more seeds at 5.
    for task, epochs, scores in (("mrpc", 20, (0.74, 0.83)), ("stsb", 10, (0.78, 0.86))):
        for budget, score in zip(("wq_r8", "all_r2"), scores, strict=True):
            overrides = (MINILM, f"task={task}", "sweep=targets", f"budget={budget}", f"train.epochs={epochs}")
            write_run(tmp_path, overrides, 0, score)
    write_run(tmp_path, (MINILM, "task=mrpc", "sweep=targets", "budget=wk_r8", "train.epochs=20"), 0, 0.76)
    for seed, score in enumerate((0.50, 0.52)):
        write_run(tmp_path, (MINILM, "task=mrpc", "sweep=targets", "budget=wq_r8", "train.epochs=5"), seed, score)
    files = write_report([tmp_path], tmp_path / "out")
    section = _section(files.markdown.read_text(), "### Which weight matrices", "## E2E NLG")
    rows = [(row["Configuration"], row["Targets (r)"], row["MRPC"], row["STS-B"]) for row in _table_rows(section)]
    assert [row for row in rows if row[2:] != ("missing", "missing")] == [
        ("LoRA α=8, preset paper", "Wq (r=8)", "74.0 (n=1)", "78.0 (n=1)"),  # one row across the tasks' budgets
        ("LoRA α=8, preset paper (other budget: 5 epochs)", "Wq (r=8)", "51.0 (50.0–52.0; n=2)", "missing"),
        ("LoRA α=8, preset paper", "Wk (r=8)", "76.0 (n=1)", "missing"),
        ("LoRA α=8, preset paper", "Wq+Wk+Wv+Wo (r=2)", "83.0 (n=1)", "86.0 (n=1)"),
    ]
    assert "one epoch budget, the one with the most seeds: MRPC 20, STS-B 10;" in section
    data = pd.read_csv(files.tables["targets"][0])
    assert sorted(data.loc[(data["task"] == "mrpc") & (data["targets"] == "Wq"), "epochs"]) == [5, 20]
    assert files.figures["targets"].read_bytes().startswith(PNG_SIGNATURE)


def test_e2e_table_units_and_paper_rows(report) -> None:
    data = pd.read_csv(report.tables["e2e"][0])
    lora = data[(data["method"] == "lora") & data["variant"].str.startswith("LoRA r=4 ")].set_index("metric")
    assert lora.loc["BLEU", "median"] == pytest.approx(70.0) and lora.loc["BLEU", "n"] == 3
    assert lora.loc["NIST", "median"] == pytest.approx(8.5) and lora.loc["METEOR", "median"] == pytest.approx(46.0)
    assert lora.loc["BLEU", "paper"] == 70.4 and lora.loc["BLEU", "delta"] == pytest.approx(-0.4)
    assert "Table 3" in lora.loc["BLEU", "paper_source"]
    r2 = data[data["variant"].str.startswith("LoRA r=2 ")].set_index("metric")
    assert r2.loc["BLEU", "paper"] == 69.17 and "Table 18" in r2.loc["BLEU", "paper_source"]
    md = report.markdown.read_text()
    assert "| paper: GPT-2 M | LoRA (Table 3)" in md and "70.4 ±0.1" in md and "8.85 ±0.02" in md


def test_e2e_runs_waiting_for_scoring_read_pending_not_zero_or_failed(tmp_path: Path) -> None:
    write_run(tmp_path, ("model=smollm2-135m",), 0, 0.70, family="e2e", steps=5258)
    full_ft = ("model=smollm2-135m", "method=full_ft")
    write_run(tmp_path, full_ft, 0, 0.0, family="e2e", steps=5258, scoring_pending=True)
    write_run(tmp_path, full_ft, 1, 0.66, family="e2e", steps=5258)
    files = write_report([tmp_path], tmp_path / "out")
    group = _group(files.groups, method="full_ft")
    assert (group["n"], group["n_pending"], group["n_failed"], group["median"]) == (1, 1, 0, pytest.approx(66.0))
    section = _section(files.markdown.read_text(), "### E2E NLG (paper Table 3", "### E2E: ours vs the paper")
    rows = {(row["Model"], row["Method"].split(",")[0]): row for row in _table_rows(section)}
    ours = rows[("smollm2-135m", "Full FT")]
    assert (ours["BLEU"], ours["CIDEr"]) == ("66.0 (n=1; 1 scoring pending)", "2.40 (n=1; 1 scoring pending)")
    assert ours["Budget"] == "5 ep · 5,258 steps"
    assert rows[("paper: GPT-2 M", "LoRA (Table 3)")]["Budget"] == "5 ep"
    write_run(tmp_path, full_ft, 1, 0.0, family="e2e", scoring_pending=True)  # now no seed is scored
    files = write_report([tmp_path], tmp_path / "out")
    section = _section(files.markdown.read_text(), "### E2E NLG (paper Table 3", "### E2E: ours vs the paper")
    ours = next(row for row in _table_rows(section) if row["Method"].startswith("Full FT"))
    assert ours["BLEU"] == "2 scoring pending" and "0.0" not in ours["BLEU"]


def test_every_table_has_csv_and_latex(report) -> None:
    expected = {"glue_methods", "glue_budget", "glue_significance", "glue_vs_paper", "rank", "alpha", "targets"}
    expected |= {"e2e", "e2e_vs_paper", "configurations", "failures", "incomplete"}
    assert set(report.tables) == expected
    for csv, tex in report.tables.values():
        assert len(pd.read_csv(csv)) > 0
        latex = tex.read_text()
        assert "\\begin{tabular}" in latex and "\\caption{" in latex and "**" not in latex
        assert f"({csv.relative_to(report.markdown.parent).as_posix()})" in report.markdown.read_text()


def test_latex_captions_are_escaped() -> None:
    from experiments.report import latex_text

    text = latex_text("Numbers from **tiny_model** (50% of 3 & more): $x #1 {a}")
    assert text == r"Numbers from tiny\_model (50\% of 3 \& more): \$x \#1 \{a\}"


def test_failures_and_incomplete_runs_are_listed(report, results: Path) -> None:
    failures = pd.read_csv(report.tables["failures"][0])
    assert {"RuntimeError: CUDA out of memory", "RuntimeError: disk full", "bad yaml"} <= set(failures["error"])
    assert failures["status"].tolist().count("unreadable") == 1
    md = report.markdown.read_text()
    assert "(config did not resolve)" in md and "disk full" in md
    incomplete = pd.read_csv(report.tables["incomplete"][0])
    assert incomplete["seed"].tolist() == [3] and incomplete["variant"].tolist() == ["LoRA r=8 α=8 Wq+Wv, preset paper"]


def test_every_table_names_its_model(report) -> None:
    md = report.markdown.read_text()
    for title in ("### GLUE: LoRA vs full", "### Score vs LoRA rank", "### E2E NLG", "### Which weight matrices"):
        caption = md[md.index(title) :].split("\n\n")[1]
        assert caption.startswith("Numbers from **"), title
    assert "**smollm2-135m**" in md and "stand-in for GPT-2 M" in md


# --- plots ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["rank", "params", "targets"])
def test_plots_are_real_pngs_linked_from_the_report(report, name: str) -> None:
    from matplotlib.image import imread

    path = report.figures[name]
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    pixels = imread(path)
    assert pixels.shape[0] > 200 and pixels.shape[1] > 400 and pixels[..., :3].std() > 0.05  # not blank
    assert f"](report/{name}.png)" in report.markdown.read_text()


def test_no_plot_without_data(tmp_path: Path) -> None:
    stale = tmp_path / "out" / "report"
    stale.mkdir(parents=True)
    (stale / "rank.png").write_bytes(PNG_SIGNATURE)  # from an earlier report with a rank sweep
    (stale / "alpha.csv").write_text("old\n")
    write_run(tmp_path, (MINILM, "task=sst2", "method=lora"), 0, 0.9)
    files = write_report([tmp_path], tmp_path / "out")
    assert set(files.figures) == {"params"}  # one rank, one target set: nothing to draw for those
    assert not (stale / "rank.png").exists() and not (stale / "alpha.csv").exists()
    text = files.markdown.read_text()
    assert "No LoRA configuration was run at two or more ranks" in text and "No E2E runs" in text


# --- Section 7 analyses -----------------------------------------------------------------------------------


def test_analysis_is_included_with_its_figure_table_and_summary(report) -> None:
    md = report.markdown.read_text()
    section = md[md.index("## Section 7 analyses") : md.index("## Every configuration")]
    assert "### Subspace similarity, r=8 vs r=64" in section
    assert "*subspace similarity* · model **minilm-l6-h384** · task **sst2**" in section
    assert "#### Findings" in section and "# not a heading" in section  # demoted; code fence untouched
    links = re.findall(r"\]\(([^)]+\.png)\)", section)
    assert links and all((report.markdown.parent / link).resolve().is_file() for link in links)
    assert len(links) == 2  # the summary's own link, re-pointed, and the figure
    inline = _table_rows(section[section.index("Table [phi.csv]") :])
    assert inline == [{"i": "1", "phi": "0.9"}, {"i": "2", "phi": "0.4"}]


def test_analysis_that_breaks_the_contract_is_shown_with_its_problems(report, analysis_dir: Path) -> None:
    analysis = read_analysis(analysis_dir / "amp" / "analysis.json")
    problems = " ".join(analysis.problems)
    assert "unknown kind 'amplify'" in problems and "gone.png does not exist" in problems
    assert "'summary_markdown' should be a string" in problems
    md = report.markdown.read_text()
    assert "### Amplification" in md and "**Problem with this analysis.json:** unknown kind 'amplify'" in md


# --- console, CLI, empty ----------------------------------------------------------------------------------


def test_console_table(results: Path) -> None:
    text = console_table(load_runs([results]))
    line = next(row for row in text.splitlines() if "SST-2" in row and "LoRA r=8 α=8 Wq+Wv, preset paper" in row)
    assert "91.00" in line and "89.00–95.00" in line and "73,728" in line
    assert "FAILED seed 1" in text and "CUDA out of memory" in text and "UNREADABLE" in text


def test_console_lists_an_incomplete_run_without_an_error_as_just_its_directory(tmp_path: Path) -> None:
    run_dir = make_incomplete_run(tmp_path, (MINILM, "task=rte", "method=bitfit"), 0)
    assert console_table(load_runs([tmp_path])).splitlines() == [f"INCOMPLETE seed 0 {run_dir}"]  # no ": nan"


def test_cli_writes_to_out(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_run(tmp_path / "runs", (MINILM, "task=rte", "method=bitfit"), 0, 0.6)
    main([str(tmp_path / "runs"), "--out", str(tmp_path / "out")])
    assert (tmp_path / "out" / "report.md").is_file() and (tmp_path / "out" / "report" / "glue_methods.csv").is_file()
    assert "BitFit, preset paper" in capsys.readouterr().out


def test_cli_refuses_a_missing_folder_and_keeps_the_last_report(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_run(tmp_path / "runs", (MINILM, "task=rte", "method=bitfit"), 0, 0.6)
    main([str(tmp_path / "runs"), "--out", str(tmp_path / "out")])
    before = (tmp_path / "out" / "report.md").read_text()
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "rnus"), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 1
    assert f"error: {tmp_path / 'rnus'} does not exist" in capsys.readouterr().err
    assert (tmp_path / "out" / "report.md").read_text() == before
    assert (tmp_path / "out" / "report" / "glue_methods.csv").is_file()


def test_cli_on_a_fresh_clone_says_there_are_no_runs_yet_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    main([])  # no runs/ yet: a message and exit 0, no empty report
    assert "no runs yet: runs/ does not exist" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


def test_report_with_no_runs(tmp_path: Path) -> None:
    files = write_report([tmp_path], tmp_path / "out")
    text = files.markdown.read_text()
    assert "0 completed, 0 failed" in text and "No runs found" in text and not files.figures


# --- the paper's numbers ----------------------------------------------------------------------------------


def test_table2_rows_average_to_the_printed_avg() -> None:
    for row in paper_numbers.TABLE2:
        mean = sum(score.value for score in row.scores.values()) / len(row.scores)
        assert abs(mean - row.average) <= 0.051, (row.model, row.method)


def _paper_md() -> str:
    if not PAPER_MD.is_file():
        pytest.skip(f"{PAPER_MD} (the shared reference) is not next to this checkout")
    return PAPER_MD.read_text(encoding="utf-8")


def test_tables_2_and_3_match_paper_md() -> None:
    text = _paper_md()
    names = {"FT": "full_ft", "BitFit": "bitfit", "LoRA": "lora", "PreLayer": "prefix_layer"}
    sizes = {"base": "roberta-base", "large": "roberta-large", "M": "gpt2-medium", "L": "gpt2-large"}
    checked = 0
    for table, metrics in ((paper_numbers.TABLE2, paper_numbers.GLUE_TASKS), (paper_numbers.TABLE3, None)):
        for line in text.splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            match = re.match(r"^(base|large|M|L) (FT|BitFit|LoRA|PreLayer)\b", cells[0])
            if not match:
                continue
            model, method = sizes[match.group(1)], names[match.group(2)]
            row = paper_numbers.paper_row(table, model, method)
            keys = metrics or paper_numbers.E2E_METRICS
            if row is None or (metrics is None) != (model.startswith("gpt2")):
                continue
            printed = cells[2 : 2 + len(keys)]
            for key, value in zip(keys, printed, strict=True):
                number, _, spread = value.partition("±")
                assert row.scores[key].value == float(number), (model, method, key)
                expected_spread = float(spread) if spread else None
                assert row.scores[key].spread == expected_spread, (model, method, key)
            assert row.trainable == cells[1]
            checked += 1
    assert checked == len(paper_numbers.TABLE2) + len(paper_numbers.TABLE3)


def test_tables_5_and_18_match_paper_md() -> None:
    text = _paper_md()
    mnli = re.search(r"MultiNLI: ([\d., ]+)\.", text).group(1)
    wikisql = re.search(r"WikiSQL: ([\d., ]+)\.", text).group(1)
    budgets = paper_numbers.TABLE5_BUDGETS
    assert [paper_numbers.TABLE5[b]["mnli"] for b in budgets] == [float(v) for v in mnli.split(", ")]
    assert [paper_numbers.TABLE5[b]["wikisql"] for b in budgets] == [float(v) for v in wikisql.split(", ")]
    for r, values in re.findall(r"r=(\d+) ([\d./]+)", text[text.index("Rank sweep, GPT-2 M") :])[:7]:
        bleu, nist, meteor, rouge, cider = (float(v) for v in values.rstrip(".").split("/"))
        row = paper_numbers.TABLE18[int(r)]
        assert (row["BLEU"].value, row["NIST"].value, row["CIDEr"].value) == (bleu, nist, cider)
        assert (row["METEOR"].value, row["ROUGE_L"].value) == pytest.approx((100 * meteor, 100 * rouge))


def test_shared_departures_from_the_recipe_are_named_in_every_label(tmp_path: Path) -> None:
    overrides = (MINILM, "task=mrpc", "train.epochs=5", "data.max_train_examples=100")
    write_run(tmp_path, (*overrides, "method=lora"), 0, 0.7)
    write_run(tmp_path, (*overrides, "method=full_ft"), 0, 0.8)
    labels = set(load_runs([tmp_path])["variant"])
    assert labels == {
        "LoRA r=8 α=8 Wq+Wv, preset paper; data.max_train_examples=100, train.epochs=5",
        "Full FT, preset paper; data.max_train_examples=100, train.epochs=5",
    }


def test_seeds_differing_only_in_where_data_is_read_or_cached_are_pooled(tmp_path: Path) -> None:
    """data.dir and data.cache_dir are outside the config hash, so they must not split the report's rows either."""
    write_run(tmp_path, (MINILM, "task=rte", "method=lora", "data.cache_dir=/a/cache", "data.dir=/a/glue"), 0, 0.6)
    write_run(tmp_path, (MINILM, "task=rte", "method=lora"), 1, 0.7)
    groups = aggregate(load_runs([tmp_path]))
    assert len(groups) == 1 and groups.iloc[0]["n"] == 2
    assert groups.iloc[0]["variant"] == "LoRA r=8 α=8 Wq+Wv, preset paper"


# --- a report that leaves the tree clean --------------------------------------------------------------------


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_the_same_runs_give_the_same_bytes(results: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rewriting a report of unchanged runs changes no file: no timestamp, stable order, no machine path."""
    monkeypatch.chdir(results.parent)
    first = write_report([results.name], "out")
    written = _tree(Path("out"))
    assert set(written) >= {"report.md", "report/params.png", "report/rank.png", "report/configurations.csv"}
    write_report([results.name], "out")
    assert _tree(Path("out")) == written
    text = first.markdown.read_text()
    assert str(results.parent) not in text and not re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d", text)


def test_tracked_only_reads_only_the_runs_git_tracks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The committed report lists the committed runs, not local ones (finished, killed or refused)."""
    import subprocess

    monkeypatch.chdir(tmp_path)
    with pytest.raises(RuntimeError, match=r"git could not say \(fatal: not a git repository.*drop --tracked-only"):
        write_report(["results"], "out", tracked_only=True)
    subprocess.run(["git", "init", "-q"], check=True)
    committed = write_run(Path("results"), (MINILM, "task=rte", "method=lora"), 0, 0.7)
    subprocess.run(["git", "add", str(committed / "result.json")], check=True)
    write_run(Path("results"), (MINILM, "task=rte", "method=lora"), 1, 0.6)  # a local run, not committed
    make_incomplete_run(Path("results"), (MINILM, "task=rte", "method=lora"), 2)
    assert len(write_report(["results"], "everything").runs) == 3
    files = write_report(["results"], "committed", tracked_only=True)
    assert files.runs["path"].tolist() == [str(committed / "result.json")]
    assert files.markdown.read_text().splitlines()[2].startswith("Committed runs read from `results`: 1 completed,")
