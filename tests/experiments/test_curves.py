"""Training curves in the report: read from synthetic run folders (step log + per-epoch history), one figure per
configuration with a line per seed, linked from report.md; runs that logged nothing are skipped. Dev curves per
task: the median and range over seeds after each epoch, per Table 2 configuration, beside Table 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments.report import write_report
from experiments.reporting.curves import DevCurve, TaskCurves, dev_curves_by_task, training_curves
from experiments.reporting.plots import _short_labels
from experiments.reporting.runs import load_runs
from experiments.results import RESULT_FILE
from experiments.step_log import STEP_LOG_FILE
from tests.experiments.synthetic_runs import write_run

MINILM = "model=minilm-l6-h384"
LORA = (MINILM, "task=sst2", "method=lora")
BITFIT = (MINILM, "task=sst2", "method=bitfit")
E2E = ("model=smollm2-135m",)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _log_training(run_dir: Path, history: list[dict], steps_per_epoch: int = 4) -> None:
    """Give a synthetic run the step log and per-epoch history a real run leaves."""
    epochs = len(history)
    records = [
        {"step": step, "epoch": (step - 1) // steps_per_epoch + 1, "loss": 1.0 / step, "lr": 1e-3, "grad_norm": 1.0}
        for step in range(1, epochs * steps_per_epoch + 1)
    ]
    (run_dir / STEP_LOG_FILE).write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    result = json.loads((run_dir / RESULT_FILE).read_text(encoding="utf-8"))
    result["metrics"]["per_epoch"] = history
    (run_dir / RESULT_FILE).write_text(json.dumps(result), encoding="utf-8")


def _results(root: Path) -> Path:
    for seed, scores in ((0, [0.80, 0.85]), (1, [0.82, 0.84])):
        run_dir = write_run(root, LORA, seed, max(scores))
        _log_training(run_dir, [{"epoch": e + 1, "step": 4 * (e + 1), "accuracy": s} for e, s in enumerate(scores)])
    write_run(root, LORA, 2, 0.9)  # a seed that logged nothing (an older run)
    write_run(root, BITFIT, 0, 0.8)  # a configuration none of whose seeds logged
    e2e = write_run(root, E2E, 110, 0.68, family="e2e")
    _log_training(e2e, [{"epoch": 1, "valid_loss": 2.5}, {"epoch": 2, "valid_loss": 2.1}])  # steps from the log
    return root


def test_curves_are_read_per_configuration_and_seed(tmp_path: Path) -> None:
    curves = {c.model: c for c in training_curves(load_runs([_results(tmp_path)]))}
    assert set(curves) == {"minilm-l6-h384", "smollm2-135m"}  # BitFit logged nothing: no curves
    glue = curves["minilm-l6-h384"]
    assert [seed.seed for seed in glue.seeds] == [0, 1]  # seed 2 logged nothing
    assert glue.metric == "accuracy" and glue.scale == 100.0 and glue.label.startswith("LoRA r=")
    assert glue.seeds[0].metric == ((4, 0.80), (8, 0.85))
    assert [step for step, _ in glue.seeds[1].loss] == list(range(1, 9))
    e2e = curves["smollm2-135m"]
    assert e2e.metric == "valid_loss" and e2e.scale == 1.0  # BLEU is measured once, at the end
    assert e2e.seeds[0].metric == ((4, 2.5), (8, 2.1))  # history without steps: placed at each epoch's last step


def test_report_draws_one_figure_per_configuration_and_links_it(tmp_path: Path) -> None:
    from matplotlib.image import imread

    stale = tmp_path / "out" / "report" / "curves" / "gone_sst2_00000000.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(PNG_SIGNATURE)  # of a configuration no longer in the results
    files = write_report([_results(tmp_path / "results")], tmp_path / "out")
    drawn = {name: path for name, path in files.figures.items() if name.startswith("curves/")}
    assert len(drawn) == 2 and not stale.exists()
    markdown = files.markdown.read_text(encoding="utf-8")
    training = markdown[markdown.index("## Training curves") : markdown.index("## Every configuration")]
    for name, path in drawn.items():
        assert path.read_bytes()[:8] == PNG_SIGNATURE
        assert imread(path)[..., :3].std() > 0.05  # not blank
        assert f"](report/{name}.png)" in training
    assert "**SST-2 · minilm-l6-h384**: LoRA" in training and "BitFit" not in training


def test_report_without_logged_runs_says_so(tmp_path: Path) -> None:
    write_run(tmp_path / "results", BITFIT, 0, 0.8)
    files = write_report([tmp_path / "results"], tmp_path / "out")
    assert not [name for name in files.figures if name.startswith("curves/")]
    assert "*No run logged its training (train_log.jsonl).*" in files.markdown.read_text(encoding="utf-8")


def test_dev_curves_per_task_pool_seeds_of_one_configuration_only(tmp_path: Path) -> None:
    from experiments.reporting.tables import in_table2

    rte = (MINILM, "task=rte", "train.epochs=3")
    for seed, scores in enumerate([[0.50, 0.60, 0.62], [0.54, 0.58, 0.61], [0.52, 0.66, 0.60]]):
        write_run(tmp_path, (*rte, "method=lora"), seed, 0, steps=30, epoch_scores=scores)
    write_run(tmp_path, (*rte, "method=full_ft"), 0, 0, steps=60, epoch_scores=[0.6, 0.7, 0.7])
    write_run(tmp_path, (MINILM, "task=rte", "method=lora", "train.epochs=2"), 0, 0, epoch_scores=[0.4, 0.45])
    write_run(tmp_path, (*rte, "method=lora", "method.r=2"), 0, 0, epoch_scores=[0.1, 0.2, 0.3])  # rank sweep
    write_run(tmp_path, (MINILM, "task=stsb", "method=bitfit"), 0, 0.8)  # one evaluation: no curve
    (panel,) = dev_curves_by_task(load_runs([tmp_path]), in_table2)
    assert (panel.model, panel.task, panel.metric, panel.scale) == ("minilm-l6-h384", "rte", "accuracy", 100.0)
    by_budget = {(c.method, c.budget): c for c in panel.curves}
    assert set(by_budget) == {("lora", 3), ("lora", 2), ("full_ft", 3)}  # two budgets: two curves; r=2 left out
    lora = by_budget[("lora", 3)]
    assert lora.epochs == (1, 2, 3) and lora.n_seeds == 3
    assert lora.median == pytest.approx((52.0, 60.0, 61.0))
    assert (lora.low, lora.high) == (pytest.approx((50.0, 58.0, 60.0)), pytest.approx((54.0, 66.0, 62.0)))
    assert by_budget[("lora", 2)].median == pytest.approx((40.0, 45.0))


def test_report_shows_the_dev_curves_beside_table_2(tmp_path: Path) -> None:
    from matplotlib.image import imread

    for method in ("lora", "bitfit"):
        for seed in range(2):
            write_run(tmp_path / "results", (MINILM, "task=rte", f"method={method}"), seed, 0,
                      epoch_scores=[0.5, 0.6 + seed / 10, 0.65])  # fmt: skip
    files = write_report([tmp_path / "results"], tmp_path / "out")
    markdown = files.markdown.read_text(encoding="utf-8")
    glue = markdown[markdown.index("## GLUE (paper Table 2)") : markdown.index("## Rank r")]
    assert "](report/dev_curves.png)" in glue
    assert imread(files.figures["dev_curves"])[..., :3].std() > 0.05
    files = write_report([tmp_path / "results" / "glue" / "minilm-l6-h384" / "rte" / "no-such"], tmp_path / "out")
    assert "dev_curves" not in files.figures and not (tmp_path / "out" / "report" / "dev_curves.png").exists()


def test_dev_curve_legend_names_the_method_and_budget_where_they_tell_curves_apart() -> None:
    def curve(label: str, method: str, budget: int) -> DevCurve:
        return DevCurve(label, method, (1, 2), (0.8, 0.9), (0.8, 0.9), (0.8, 0.9), n_seeds=3, budget=budget)

    def panel(*curves: DevCurve) -> TaskCurves:
        return TaskCurves("glue", "minilm-l6-h384", "sst2", "accuracy", 100.0, curves)

    two_budgets = panel(curve("LoRA r=8 a", "lora", 2), curve("LoRA r=8 a", "lora", 5), curve("Full FT", "full_ft", 2))
    assert _short_labels(two_budgets) == ["LoRA (2 ep, n=3)", "LoRA (5 ep, n=3)", "Full FT (2 ep, n=3)"]
    started = DevCurve("LoRA r=8 a; from mnli", "lora", (1, 2), (0.8,) * 2, (0.8,) * 2, (0.8,) * 2, 3, 5, "mnli")
    two_starts = panel(curve("LoRA r=8 a", "lora", 2), started)
    assert _short_labels(two_starts) == ["LoRA (2 ep, n=3)", "LoRA, from mnli (5 ep, n=3)"]
    two_ranks = panel(curve("LoRA r=8", "lora", 2), curve("LoRA r=64", "lora", 2))
    assert _short_labels(two_ranks) == ["LoRA r=8 (2 ep, n=3)", "LoRA r=64 (2 ep, n=3)"]
