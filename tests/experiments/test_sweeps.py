"""The named sweeps (conf/sweep) and launchers (conf/launcher): each composes, expands into the jobs Hydra's
sweeper would launch, and those jobs train what the paper's tables vary. One real multirun checks that a
failing job is recorded while the others finish."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from hydra.utils import get_class

import lora
from experiments.config import CONF_DIR, compose_config
from experiments.methods import apply_method
from experiments.recipes import register_resolvers
from experiments.synthetic import write_glue_folder, write_tiny_roberta
from tests.experiments.entry_point import run_main_in_process
from tests.tiny_models import tiny_roberta_config

SWEEPS = sorted(p.stem for p in (CONF_DIR / "sweep").glob("*.yaml"))
LAUNCHERS = sorted(p.stem for p in (CONF_DIR / "launcher").glob("*.yaml"))
FAMILIES = ("glue", "e2e")


def _hydra_config(family: str, overrides: list[str]):
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name=family, overrides=overrides, return_hydra_config=True)


def expand(family: str, overrides: list[str]) -> list[list[str]]:
    """The job override lists Hydra's basic sweeper launches for ``overrides`` (config params, then CLI)."""
    parser = OverridesParser.create()
    fixed = [o.input_line for o in parser.parse_overrides(overrides) if not o.is_sweep_override()]
    cfg = _hydra_config(family, fixed)  # Hydra composes the sweep's own config without the swept values
    params = [f"{k}={v}" for k, v in (cfg.hydra.sweeper.params or {}).items()]
    parsed = parser.parse_overrides(params + overrides)
    (batch,) = BasicSweeper.split_arguments(parsed, None)
    return batch


def job_configs(family: str, overrides: list[str]):
    """Each job's composed config, as the job itself composes it (the sweep's overrides plus its own)."""
    return [compose_config(family, job) for job in expand(family, overrides)]


def test_the_sweeps_are_the_ones_documented() -> None:
    assert SWEEPS == ["alpha", "methods", "rank", "seeds", "targets", "variants"]
    assert LAUNCHERS == ["basic", "joblib", "slurm"]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("sweep", SWEEPS)
def test_every_sweep_composes_as_a_multirun(family: str, sweep: str) -> None:
    cfg = _hydra_config(family, [f"sweep={sweep}"])
    assert cfg.hydra.mode == RunMode.MULTIRUN  # `python -m experiments.glue sweep=rank` needs no --multirun
    assert cfg.hydra.sweeper.params


def test_rank_sweep_runs_the_papers_ranks_at_a_fixed_alpha() -> None:
    configs = job_configs("glue", ["sweep=rank"])
    assert [c.method.r for c in configs] == [1, 2, 4, 8, 16, 32, 64]
    assert {c.method.lora_alpha for c in configs} == {8.0}  # the paper's RoBERTa-base alpha, never retuned
    assert all(list(c.method.targets) == ["Wq", "Wv"] for c in configs)
    e2e = job_configs("e2e", ["sweep=rank"])
    assert [c.method.r for c in e2e] == [1, 2, 4, 8, 16, 32, 64] and {c.method.lora_alpha for c in e2e} == {32.0}


def test_command_line_values_replace_a_sweeps_own() -> None:
    assert [c.method.r for c in job_configs("glue", ["sweep=rank", "method.r=4,16"])] == [4, 16]


def test_alpha_sweep_scales_by_alpha_over_r_one_and_alpha_over_sqrt_r() -> None:
    """Each rule's LoRA layers get the scaling it promises, at every rank (checked on the injected layers)."""
    from transformers import RobertaForSequenceClassification

    configs = job_configs("glue", ["sweep=alpha"])
    assert len(configs) == 9
    seen = set()
    for cfg in configs:
        model = RobertaForSequenceClassification(tiny_roberta_config())
        apply_method(model, dict(cfg.method), ["classifier"])
        scalings = {m.scaling for m in model.modules() if isinstance(m, lora.LoRALayer)}
        r, alpha = cfg.method.r, cfg.method.lora_alpha
        rule = "rslora" if cfg.method.use_rslora else ("equal_r" if alpha == r and alpha != 8.0 else "fixed")
        expected = {"fixed": 8.0 / r, "equal_r": 1.0, "rslora": 8.0 / math.sqrt(r)}[rule]
        assert len(scalings) == 1 and scalings.pop() == pytest.approx(expected), (rule, r)
        seen.add((rule, r))
    # At r = 8 the fixed and alpha = r rules are the same config (alpha 8 = r), so that job shows as "fixed".
    assert seen == {(rule, r) for rule in ("fixed", "rslora") for r in (2, 8, 32)} | {("equal_r", 2), ("equal_r", 32)}


def test_alpha_equal_r_at_the_recipes_alpha_is_the_fixed_config_itself() -> None:
    from experiments.results import config_hash
    from experiments.runner import plain_config

    same = [
        plain_config(compose_config("glue", ["sweep=alpha", f"alpha_rule={rule}", "method.r=8"]))
        for rule in ("fixed", "equal_r")
    ]
    assert config_hash(same[0]) == config_hash(same[1])  # one run directory: the second job finds it done


def test_targets_sweep_is_table_5s_seven_pairs_at_one_budget() -> None:
    from transformers import RobertaForSequenceClassification

    configs = job_configs("glue", ["sweep=targets"])
    pairs = [(tuple(c.method.targets), c.method.r) for c in configs]
    assert pairs == [
        (("Wq",), 8),
        (("Wk",), 8),
        (("Wv",), 8),
        (("Wo",), 8),
        (("Wq", "Wk"), 4),
        (("Wq", "Wv"), 4),
        (("Wq", "Wk", "Wv", "Wo"), 2),
    ]
    counts = set()
    for cfg in configs:
        model = RobertaForSequenceClassification(tiny_roberta_config())
        counts.add(apply_method(model, dict(cfg.method), ["classifier"]).counts.trainable)
    assert counts == {2 * 8 * (32 + 32)}  # 2 layers x r x (d_in + d_out) summed over matrices: r x n = 8


def test_rules_and_budgets_also_apply_to_single_runs() -> None:
    rs = compose_config("glue", ["+alpha_rule=rslora", "method.r=16"]).method
    assert (rs.r, rs.lora_alpha, rs.use_rslora) == (16, 8.0, True)
    equal = compose_config("e2e", ["+alpha_rule=equal_r", "method.r=16"]).method
    assert (equal.lora_alpha, equal.use_rslora) == (16.0, False)
    budget = compose_config("e2e", ["+budget=wq_wk_r4"]).method
    assert (list(budget.targets), budget.r) == (["Wq", "Wk"], 4)


def test_seed_and_method_sweeps() -> None:
    assert expand("glue", ["sweep=seeds"]) == [[f"seed={s}", "sweep=seeds"] for s in range(5)]
    jobs = expand("glue", ["sweep=methods", "task=rte"])
    assert jobs == [
        [f"method={m}", f"seed={s}", "sweep=methods", "task=rte"]
        for m in ("lora", "full_ft", "bitfit")
        for s in range(5)
    ]
    assert compose_config("glue", jobs[-1]).method.name == "bitfit"


def test_variants_sweep_runs_every_registered_method() -> None:
    from experiments.methods import METHODS

    jobs = expand("glue", ["sweep=variants", "task=rte"])
    methods = [next(o.split("=", 1)[1] for o in job if o.startswith("method=")) for job in jobs]
    assert sorted(set(methods)) == sorted(METHODS) and len(jobs) == 3 * len(METHODS)
    assert {compose_config("glue", job).method.name for job in jobs} == set(METHODS)


def test_sweeps_combine_as_a_list_into_their_product() -> None:
    jobs = expand("glue", ["sweep=[rank,seeds]"])
    assert jobs == [
        [f"method.r={r}", f"seed={s}", "sweep=[rank,seeds]"] for r in (1, 2, 4, 8, 16, 32, 64) for s in range(5)
    ]
    last = compose_config("glue", jobs[-1])
    assert (last.method.r, last.seed) == (64, 4)
    assert len(expand("e2e", ["sweep=[targets,seeds]"])) == 35


@pytest.mark.parametrize("family", FAMILIES)
def test_launchers_select_hydras_plugins(family: str) -> None:
    expected = {
        "basic": "hydra._internal.core_plugins.basic_launcher.BasicLauncher",
        "joblib": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
        "slurm": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
    }
    for name, target in expected.items():
        launcher = _hydra_config(family, [f"launcher={name}", "sweep=seeds"]).hydra.launcher
        assert launcher._target_ == target
        assert get_class(launcher._target_).__name__ == target.rpartition(".")[2]
    slurm = _hydra_config(family, ["launcher=slurm"]).hydra.launcher
    assert (slurm.gpus_per_node, slurm.tasks_per_node, slurm.nodes) == (1, 1, 1) and slurm.max_num_timeout > 0
    assert _hydra_config(family, ["launcher=joblib"]).hydra.launcher.n_jobs == 2


def test_default_launcher_is_sequential() -> None:
    assert _hydra_config("glue", []).hydra.launcher._target_.endswith("BasicLauncher")


def test_a_failing_job_is_recorded_and_the_sweep_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """A real `sweep=rank` multirun where one job's target matches nothing and two jobs' rank is refused:
    failure.json records each (the refused ones in the sweep's folder, as they have no run directory), the
    other job still finishes, and the sweep ends with a summary table and exit status 1.

    It runs in this process (the command's own entry point, with its argv), as the basic launcher runs jobs.
    """
    data = write_glue_folder(tmp_path / "data", n_train=16, n_dev=8)
    model = write_tiny_roberta(tmp_path / "model")
    results = tmp_path / "results"
    argv = [
        "sweep=rank",
        "method.r=0,2",
        "method.targets=[Wx],[Wq]",
        "experiment=glue_quick",
        f"model.name_or_path={model}",
        f"data.dir={data}",
        f"results_dir={results}",
        f"hydra.sweep.dir={tmp_path / 'multirun'}",
        "train.epochs=1",
    ]
    assert run_main_in_process("glue", argv, tmp_path / "cwd", monkeypatch) == 1
    table = capsys.readouterr().out.split("Sweep summary")[-1]
    assert "4 jobs: 1 done, 0 skipped (already complete), 3 failed" in table
    assert table.count("failed   ConfigError: method.r=0 is not allowed (allowed: an integer >= 1)") == 2
    assert "failed   TargetNotFoundError: target 'Wx' matched no module" in table
    assert "done     glue/" in table
    (failure,) = results.rglob("failure.json")
    assert str(tmp_path) not in failure.read_text().split('"traceback"')[0]  # no machine path in the record
    (result,) = results.rglob("result.json")
    recorded = json.loads(failure.read_text())
    assert recorded["status"] == "failed" and recorded["config"]["method"]["targets"] == ["Wx"]
    assert "target 'Wx' matched no module" in recorded["error"]
    assert "method.targets=[Wx]" in recorded["overrides"] and "Traceback" in recorded["traceback"]
    assert json.loads(result.read_text())["hyperparameters"]["r"] == 2
    assert len(list((tmp_path / "multirun").glob("*/job.json"))) == 4  # every job recorded in the sweep's folder
    refused = [json.loads(p.read_text()) for p in (tmp_path / "multirun").glob("*/failure.json")]
    assert [r["error"].split(" is not")[0] for r in refused] == ["ConfigError: method.r=0"] * 2
    assert {p.parent for p in results.rglob(".hydra")} == {failure.parent, result.parent}  # Hydra's folder = run's
    assert not any((tmp_path / "cwd").iterdir())  # nothing in the working directory: no outputs/ or multirun/

    from experiments.report import write_report

    report = write_report([results], tmp_path / "report")
    assert sorted(report.runs["status"]) == ["completed", "failed"]
    text = report.markdown.read_text()
    assert "target 'Wx' matched no module" in text and str(failure) in text
