"""Composition of every GLUE config, and the paper's hyperparameters as defaults (../shared/PAPER.md)."""

from __future__ import annotations

import pytest

from experiments.config import CONF_DIR, compose_config
from experiments.glue_tasks import task_from_config

TASKS = sorted(p.stem for p in (CONF_DIR / "task").glob("*.yaml") if p.stem != "e2e")
METHODS = ["lora", "full_ft", "bitfit"]

# Transcribed from PAPER.md ("RoBERTa-base LoRA hyperparameters"): batch, lr, epochs.
PAPER_BASE = {
    "mnli": (16, 5e-4, 30),
    "sst2": (16, 5e-4, 60),
    "mrpc": (16, 4e-4, 30),
    "cola": (32, 4e-4, 80),
    "qnli": (32, 4e-4, 25),
    "qqp": (16, 5e-4, 25),
    "rte": (32, 5e-4, 80),
    "stsb": (16, 4e-4, 40),
}
# PAPER.md RoBERTa-large: seq / batch / lr / epochs.
PAPER_LARGE = {
    "mnli": (128, 4, 3e-4, 10),
    "sst2": (128, 4, 4e-4, 10),
    "mrpc": (512, 4, 3e-4, 20),
    "cola": (128, 4, 2e-4, 20),
    "qnli": (512, 4, 2e-4, 10),
    "qqp": (512, 4, 3e-4, 20),
    "rte": (512, 8, 4e-4, 20),
    "stsb": (512, 8, 2e-4, 30),
}


def test_all_eight_glue_tasks_are_configured() -> None:
    assert set(TASKS) == {"cola", "mnli", "mrpc", "qnli", "qqp", "rte", "sst2", "stsb"}


@pytest.mark.parametrize("task", sorted(PAPER_BASE))
def test_roberta_base_lora_defaults_are_the_papers(task: str) -> None:
    cfg = compose_config("glue", [f"task={task}", "method=lora"])
    batch, lr, epochs = PAPER_BASE[task]
    assert (cfg.train.batch_size, cfg.train.lr, cfg.train.epochs) == (batch, lr, epochs)
    assert cfg.train.max_seq_length == 512 and cfg.train.warmup_ratio == 0.06 and cfg.train.weight_decay == 0.1
    assert cfg.method.r == 8 and list(cfg.method.targets) == ["Wq", "Wv"] and cfg.method.lora_dropout == 0.0
    assert cfg.method.lora_alpha == 8  # the paper's alpha
    assert cfg.preset.name == "paper"


@pytest.mark.parametrize("task", sorted(PAPER_BASE))
def test_repo_preset_uses_the_scripts_alpha_and_per_gpu_batch(task: str) -> None:
    cfg = compose_config("glue", [f"task={task}", "method=lora", "preset=repo"])
    gpus = 2 if task == "cola" else 8
    assert cfg.method.lora_alpha == 16
    assert cfg.train.batch_size == PAPER_BASE[task][0] * gpus


@pytest.mark.parametrize("task", sorted(PAPER_LARGE))
def test_roberta_large_lora_defaults_are_the_papers(task: str) -> None:
    cfg = compose_config("glue", ["model=roberta-large", f"task={task}"])
    assert (cfg.train.max_seq_length, cfg.train.batch_size, cfg.train.lr, cfg.train.epochs) == PAPER_LARGE[task]
    repo = compose_config("glue", ["model=roberta-large", f"task={task}", "preset=repo"])
    assert repo.train.lr == (3e-4 if task == "cola" else PAPER_LARGE[task][2])


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("method", METHODS)
def test_every_task_and_method_composes_and_resolves(task: str, method: str) -> None:
    cfg = compose_config("glue", [f"task={task}", f"method={method}"])
    glue_task = task_from_config(cfg.task)
    assert glue_task.main_metric in glue_task.metrics
    assert cfg.train.lr > 0 and cfg.train.batch_size > 0


def test_overrides_win_over_recipe_values() -> None:
    cfg = compose_config("glue", ["task=rte", "method=lora", "method.r=4", "train.lr=1e-4", "seed=2"])
    assert (cfg.method.r, cfg.train.lr, cfg.seed) == (4, 1e-4, 2)


def test_mnli_reports_matched_and_records_mismatched() -> None:
    task = task_from_config(compose_config("glue", ["task=mnli"]).task)
    assert list(task.eval_splits) == ["dev_matched", "dev_mismatched"] and task.main_split == "dev_matched"


def test_e2e_task_is_refused_by_the_glue_runner() -> None:
    with pytest.raises(ValueError, match="task=e2e is not a GLUE task"):
        task_from_config({"name": "e2e", "family": "e2e"})


@pytest.mark.parametrize("task", ["sst2", "mrpc", "cola", "rte", "stsb"])
@pytest.mark.parametrize("method", METHODS)
def test_the_minilm_presets_keep_each_recipe_and_share_one_budget_per_task(task: str, method: str) -> None:
    from experiments.runner import checked_config

    preset = compose_config("glue", [f"experiment=minilm_{task}", f"method={method}"])
    recipe = compose_config("glue", ["model=minilm-l6-h384", f"task={task}", f"method={method}"])
    _, plain = checked_config(preset, "glue")
    assert (plain["model"]["name"], plain["task"]["name"]) == ("minilm-l6-h384", task)
    assert (plain["train"]["lr"], plain["train"]["batch_size"]) == (recipe.train.lr, recipe.train.batch_size)
    budgets = {m: compose_config("glue", [f"experiment=minilm_{task}", f"method={m}"]).train.epochs for m in METHODS}
    assert set(budgets.values()) == {plain["train"]["epochs"]}


def test_the_smollm2_preset_validates_for_the_methods_it_runs() -> None:
    from experiments.runner import checked_config

    for method in ("lora", "full_ft"):
        _, plain = checked_config(compose_config("e2e", ["experiment=smollm2_e2e", f"method={method}"]), "e2e")
        assert (plain["model"]["name"], plain["train"]["epochs"], plain["decode"]["num_beams"]) == (
            "smollm2-135m",
            1,
            10,
        )
