"""Our GLUE runner trains exactly like an independent plain loop (PEFT for LoRA, torch for full FT and BitFit).

Same initial weights and batches, fp32, dropout off: the loss of every step agrees to 1e-5 relative. The
runner is driven through the MiniLM model config, so its defaults (what trains beside the method) are what
is tested; ``model.train_pooler=true`` is the named departure, tested against PEFT with the pooler saved.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import lora
from benchmarks.reference import (
    ReferenceSettings,
    bitfit_reference,
    full_ft_reference,
    peft_lora_model,
    train_reference,
)
from experiments.config import compose_config
from experiments.glue import run_glue
from experiments.glue_data import load_glue
from experiments.glue_tasks import task_from_config
from experiments.step_log import STEP_LOG_FILE, read_step_log
from experiments.synthetic import write_glue_folder, write_tiny_bert
from experiments.tasks.glue import make_collate, tokenize
from experiments.training import epoch_batches

N_TRAIN, BATCH, EPOCHS, SEED = 80, 8, 2, 3  # 20 steps over two epochs (two batch orders)


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("trajectory")
    return {
        "data": write_glue_folder(root / "data", n_train=N_TRAIN, n_dev=16),
        "model": write_tiny_bert(root / "model", dropout=0.0),
    }


def _ours(assets: dict[str, Path], results: Path, *extra: str) -> tuple[list[float], dict]:
    cfg = compose_config(
        "glue",
        [
            "model=minilm-l6-h384",
            f"model.name_or_path={assets['model']}",
            f"data.dir={assets['data']}",
            f"results_dir={results}",
            "task=sst2",
            "device=cpu",
            f"seed={SEED}",
            f"train.epochs={EPOCHS}",
            f"train.batch_size={BATCH}",
            "train.log_every_steps=1",
            *extra,
        ],
    )
    result = run_glue(cfg)
    log = read_step_log(results / result["run_dir"] / STEP_LOG_FILE)  # run_dir is relative to results_dir
    losses = [record["loss"] for record in log]
    return losses, cfg


def _reference_inputs(assets: dict[str, Path], cfg) -> tuple[list[list[dict[str, torch.Tensor]]], ReferenceSettings]:
    from transformers import AutoTokenizer

    task = task_from_config(cfg.task)
    tokenizer = AutoTokenizer.from_pretrained(str(assets["model"]))
    items = tokenize(load_glue(task, str(assets["data"]), None).train, tokenizer, 128, task.is_regression)
    collate = make_collate(tokenizer, task.is_regression)
    epochs = [
        [collate([items[i] for i in indices]) for indices in epoch_batches(len(items), BATCH, SEED, epoch)]
        for epoch in range(EPOCHS)
    ]
    train = cfg.train
    settings = ReferenceSettings(
        lr=float(train.lr),
        total_steps=sum(len(batches) for batches in epochs),
        weight_decay=train.weight_decay,
        warmup_ratio=train.warmup_ratio,
        max_grad_norm=train.max_grad_norm,
        betas=(train.adam_beta1, train.adam_beta2),
        eps=train.adam_eps,
    )
    return epochs, settings


def _pretrained(assets: dict[str, Path]):
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(SEED)  # the runner seeds the new head's initialisation the same way
    return AutoModelForSequenceClassification.from_pretrained(str(assets["model"]), num_labels=2, dtype=torch.float32)


def _assert_same_trajectory(ours: list[float], reference: list[float]) -> None:
    assert len(ours) == len(reference) == N_TRAIN // BATCH * EPOCHS
    torch.testing.assert_close(torch.tensor(ours), torch.tensor(reference), rtol=1e-5, atol=0.0)


def _peft_lora_trajectory(assets, cfg, extra_modules: tuple[str, ...] = ()) -> list[float]:
    method = cfg.method
    # Our initial A (B starts at zero in both): LoRA injected into the same pretrained weights, same seed.
    ours_at_start = _pretrained(assets)
    lora.inject_lora(ours_at_start, list(method.targets), r=method.r, lora_alpha=method.lora_alpha)
    initial_a = {name: layer.lora_A.detach().clone() for name, layer in lora.named_lora_layers(ours_at_start)}
    model = peft_lora_model(_pretrained(assets), method.r, method.lora_alpha, ["query", "value"], extra_modules)
    with torch.no_grad():
        for name, module in model.named_modules():
            if name.endswith(".lora_A.default"):
                layer_name = name.removeprefix("base_model.model.").removesuffix(".lora_A.default")
                module.weight.copy_(initial_a[layer_name])
    epochs, settings = _reference_inputs(assets, cfg)
    return train_reference(model, epochs, settings)


def test_lora_equals_a_plain_peft_loop(assets, tmp_path: Path) -> None:
    ours, cfg = _ours(assets, tmp_path, "method=lora")
    _assert_same_trajectory(ours, _peft_lora_trajectory(assets, cfg))


def test_training_the_pooler_is_a_named_option_equal_to_peft_with_the_pooler_saved(assets, tmp_path: Path) -> None:
    ours, cfg = _ours(assets, tmp_path, "method=lora", "model.train_pooler=true")
    _assert_same_trajectory(ours, _peft_lora_trajectory(assets, cfg, extra_modules=("pooler",)))
    default = _peft_lora_trajectory(assets, cfg)
    assert max(abs(a - b) / abs(b) for a, b in zip(ours, default, strict=True)) > 1e-3  # a real difference


@pytest.mark.parametrize(("method", "reference"), [("full_ft", full_ft_reference), ("bitfit", bitfit_reference)])
def test_full_ft_and_bitfit_equal_a_plain_torch_loop(assets, tmp_path: Path, method: str, reference) -> None:
    ours, cfg = _ours(assets, tmp_path, f"method={method}")
    epochs, settings = _reference_inputs(assets, cfg)
    _assert_same_trajectory(ours, train_reference(reference(_pretrained(assets)), epochs, settings))
