"""GLUE on RoBERTa (the paper's Table 2): LoRA vs full fine-tuning vs BitFit.

    python -m experiments.glue task=rte method=lora method.r=4 seed=2
    python -m experiments.glue --multirun task=sst2,mrpc method=lora,full_ft,bitfit

:func:`run_glue` is the plain function behind the Hydra command; it takes the composed config.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import hydra
import torch
import torch.nn as nn
import torch.nn.functional as F
from omegaconf import DictConfig
from tqdm.auto import tqdm

from experiments.distributed import setup_distributed
from experiments.glue_data import Example, load_glue
from experiments.glue_tasks import GlueTask, task_from_config
from experiments.methods import apply_method
from experiments.metrics import compute_metrics
from experiments.models import load_sequence_classifier, load_tokenizer
from experiments.recipes import glue_recipe, register_resolvers
from experiments.results import config_hash, write_result
from experiments.runner import (
    hydra_output_dir,
    load_lora_init,
    plain_config,
    prepare_run_dir,
    remove_checkpoint,
    run_hydra_job,
    run_record,
    save_trained,
    summarize_history,
)
from experiments.training import TrainSettings, fit

__all__ = ["main", "run_glue"]

register_resolvers()


def tokenize(examples: Sequence[Example], tokenizer: Any, max_length: int, regression: bool) -> list[dict]:
    """Encode single sentences or pairs, truncated to ``max_length`` tokens."""
    columns = list(zip(*(example.texts for example in examples), strict=True))
    encoded = tokenizer(*columns, truncation=True, max_length=max_length)
    labels = [float(e.label) if regression else int(e.label) for e in examples]
    keys = list(encoded.keys())
    return [{**{k: encoded[k][i] for k in keys}, "labels": labels[i]} for i in range(len(examples))]


def make_collate(tokenizer: Any, regression: bool):
    """Pad a list of encoded examples to the longest (rounded up to a multiple of 8 for tensor cores)."""

    def collate(items: list[dict]) -> dict[str, torch.Tensor]:
        features = [{k: v for k, v in item.items() if k != "labels"} for item in items]
        batch = dict(tokenizer.pad(features, padding=True, pad_to_multiple_of=8, return_tensors="pt"))
        dtype = torch.float32 if regression else torch.long
        batch["labels"] = torch.tensor([item["labels"] for item in items], dtype=dtype)
        return batch

    return collate


def classification_loss_sum(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Summed cross-entropy (classification) or squared error (regression: one output)."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = model(**inputs).logits.float()
    labels = batch["labels"]
    if logits.shape[-1] == 1:
        return F.mse_loss(logits.squeeze(-1), labels, reduction="sum")
    return F.cross_entropy(logits, labels, reduction="sum")


def predict(model: nn.Module, items: list[dict], collate, batch_size: int, device: torch.device, desc: str):
    """Predicted class ids (or scores for regression) and gold labels of one evaluation split."""
    predictions, labels = [], []
    for start in tqdm(range(0, len(items), batch_size), desc=desc, leave=False, dynamic_ncols=True):
        batch = {k: v.to(device) for k, v in collate(items[start : start + batch_size]).items()}
        gold = batch.pop("labels")
        logits = model(**batch).logits.float()
        predictions.append(logits.squeeze(-1) if logits.shape[-1] == 1 else logits.argmax(-1))
        labels.append(gold)
    return torch.cat(predictions).cpu().tolist(), torch.cat(labels).cpu().tolist()


def _evaluator(task: GlueTask, splits: Mapping[str, list[dict]], collate, batch_size: int, device):
    def evaluate(model: nn.Module, epoch: int) -> dict[str, Any]:
        metrics: dict[str, Any] = {}
        for split, items in splits.items():
            predictions, labels = predict(model, items, collate, batch_size, device, f"eval {split}")
            for name, value in compute_metrics(task.metrics, predictions, labels).items():
                metrics[f"{split}/{name}"] = value
        metrics[task.main_metric] = metrics[f"{task.main_split}/{task.main_metric}"]
        return metrics

    return evaluate


def _banner(cfg: Mapping[str, Any], counts, settings: TrainSettings, n_train: int, world: int, run_dir) -> str:
    per_device = settings.per_device_batch_size or -(-settings.batch_size // world)
    accumulation = -(-settings.batch_size // (per_device * world))
    steps = -(-n_train // settings.batch_size)
    method = cfg["method"]
    detail = ""
    if method["name"] == "lora":
        detail = f" r={method['r']} alpha={method['lora_alpha']:g} targets={'+'.join(method['targets'])}"
    return "\n".join(
        [
            f"== GLUE {cfg['task']['name']} | {cfg['model']['name']} | {method['name']}{detail} | "
            f"preset {cfg['preset']['name']} | seed {cfg['seed']}",
            f"   trainable {counts.trainable:,} (+ head {counts.head_trainable:,}) of {counts.total:,} "
            f"({100 * counts.trainable_fraction:.3f}%)",
            f"   {n_train:,} train examples; global batch {settings.batch_size} = {per_device}/device x {world} "
            f"device(s) x {accumulation} accumulation; {steps} steps/epoch x {settings.epochs} epochs; "
            f"lr {settings.lr:g}",
            f"   run dir {run_dir}",
        ]
    )


def train_settings(train: Mapping[str, Any], seed: int, eval_every_epoch: bool = True) -> TrainSettings:
    """The loop's settings from a ``train`` config group."""
    fields = TrainSettings.__dataclass_fields__
    values = {k: v for k, v in train.items() if k in fields}
    return TrainSettings(**values, seed=seed, eval_every_epoch=eval_every_epoch)


def run_glue(cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    """Fine-tune one (model, task, method, seed) and write its ``result.json``; return the result."""
    plain = plain_config(cfg)
    task = task_from_config(plain["task"])
    method, model_cfg, train = plain["method"], plain["model"], plain["train"]
    settings = train_settings(train, plain["seed"])  # validates before any loading
    ctx = setup_distributed(plain["device"])
    run_dir, finished = prepare_run_dir(plain, "glue")
    if finished is not None:
        if ctx.is_main:
            print(f"already complete: {run_dir / 'result.json'} (overwrite=true to rerun)", flush=True)
        return finished

    started = time.perf_counter()
    tokenizer = load_tokenizer(model_cfg["name_or_path"])
    data_cfg = plain["data"]
    data = load_glue(
        task,
        data_cfg["dir"],
        data_cfg["hub_dataset"],
        data_cfg["skip_malformed"],
        data_cfg["max_train_examples"],
    )
    torch.manual_seed(plain["seed"])  # the head's and LoRA's initialisation
    model = load_sequence_classifier(
        model_cfg["name_or_path"], task.num_labels, model_cfg["dtype"], model_cfg.get("attn_implementation")
    )
    applied = apply_method(model, method, model_cfg["head_modules"])
    init_adapter = method.get("init_adapter")
    if init_adapter:
        load_lora_init(model, init_adapter)
    model.to(ctx.device)

    max_len = train["max_seq_length"]
    train_items = tokenize(data.train, tokenizer, max_len, task.is_regression)
    limit = data_cfg["max_eval_examples"]
    eval_items = {
        split: tokenize(examples[:limit] if limit else examples, tokenizer, max_len, task.is_regression)
        for split, examples in data.evals.items()
    }
    collate = make_collate(tokenizer, task.is_regression)
    counts = applied.counts
    if ctx.is_main:
        print(_banner(plain, counts, settings, len(train_items), ctx.world_size, run_dir), flush=True)
    outcome = fit(
        model,
        train_items,
        collate,
        classification_loss_sum,
        _evaluator(task, eval_items, collate, train["eval_batch_size"], ctx.device),
        settings,
        run_dir,
        ctx,
        fingerprint=f"{config_hash(plain)}-seed{plain['seed']}",
    )
    summary = summarize_history(outcome.history, task.main_metric)
    recipe = glue_recipe(model_cfg["recipe"], method["name"], task.name, plain["preset"]["name"])
    result = run_record(plain, "glue", task.name, settings, applied, outcome, ctx, run_dir, started)
    result["hyperparameters"]["init_from"] = init_adapter or "pretrained"
    result.update(
        recipe=recipe.as_dict(),
        main_metric=task.main_metric,
        main_metric_value=summary["best"][task.main_metric] if summary["best"] else None,
        metrics={"per_epoch": outcome.history, **summary},
        data={
            "source": data.source,
            "train_examples": len(train_items),
            "eval_examples": {k: len(v) for k, v in eval_items.items()},
            "skipped_rows": data.skipped_rows,
        },
    )
    if ctx.is_main:
        result["saved"] = save_trained(
            model,
            method,
            run_dir,
            model_cfg["head_modules"],
            {"task": task.name, "model": model_cfg["name"], "seed": plain["seed"]},
        )
        hydra_dir = hydra_output_dir()
        write_result(run_dir, result, (hydra_dir,) if hydra_dir else ())
        remove_checkpoint(run_dir)
        best = summary["best"] or {}
        last = summary["last"] or {}
        print(
            f"{task.name} {method['name']} seed {plain['seed']}: best {task.main_metric} "
            f"{best.get(task.main_metric, float('nan')):.4f} (epoch {summary['best_epoch']}), last "
            f"{last.get(task.main_metric, float('nan')):.4f}; trainable {counts.trainable:,}; "
            f"{result['wall_time_s']:.0f}s; {run_dir / 'result.json'}",
            flush=True,
        )
    return result


@hydra.main(version_base="1.3", config_path="../conf", config_name="glue")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point: one job, or each job of a ``--multirun`` sweep."""
    return run_hydra_job(run_glue, cfg, "glue")


if __name__ == "__main__":
    main()
