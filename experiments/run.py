"""The one run skeleton every task family shares: validate -> method -> run directory -> load -> fit ->
task evaluation -> save -> result.

A family (``experiments.tasks.glue``, ``experiments.tasks.e2e``) supplies what differs: its data and model,
how a batch is encoded and scored during training, and what it measures at the end. The method
(``experiments.methods``) supplies what trains, its optimizer groups and what it saves.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from functools import partial
from typing import Any

import torch
import torch.nn as nn
from omegaconf import DictConfig

from experiments.distributed import setup_distributed
from experiments.fingerprints import model_fingerprint
from experiments.methods import get_method
from experiments.results import config_hash, portable_config, write_result
from experiments.runner import (
    adapter_fingerprint,
    checked_config,
    load_lora_init,
    prepare_run_dir,
    relative_run_dir,
    remove_checkpoint,
    require_adapter,
    run_record,
    summarize_history,
)
from experiments.tasks import FAMILIES
from experiments.tracking import LOGS_DIR, TrackedRun, open_tracker
from experiments.training import TrainSettings, fit

__all__ = ["run", "train_settings"]

logger = logging.getLogger(__name__)


def train_settings(train: Mapping[str, Any], seed: int) -> TrainSettings:
    """The loop's settings from a (validated) ``train`` config group."""
    fields = TrainSettings.__dataclass_fields__
    return TrainSettings(**{k: v for k, v in train.items() if k in fields}, seed=seed)


def run(cfg: DictConfig | Mapping[str, Any], family: str) -> dict[str, Any]:
    """Fine-tune one (model, task, method, seed) of ``family`` and write its ``result.json``; return it.

    Raises:
        ConfigError: a setting is unknown, mistyped or out of range (before anything is loaded).
        TrackerUnavailableError: the ``logger`` backend's package is missing (before anything is loaded).
    """
    typed, plain = checked_config(cfg, family)
    tracking = typed.logger
    task = FAMILIES[family](plain)
    method = get_method(plain["method"])
    model_cfg, seed = plain["model"], plain["seed"]
    settings = train_settings(plain["train"], seed)
    init_adapter = plain["method"].get("init_adapter")
    ctx = setup_distributed(plain["device"])
    inputs = {
        "data": task.data_fingerprint(),
        "tokenizer": task.tokenizer_fingerprint,
        "model": model_fingerprint(model_cfg["name_or_path"]),
        "init_adapter": adapter_fingerprint(init_adapter),  # refuses a missing adapter before any loading
    }
    run_dir, finished = prepare_run_dir(plain, family, inputs)
    if finished is not None:
        if ctx.is_main:
            logger.info("already complete: %s (overwrite=true to rerun)", run_dir / "result.json")
        return finished

    started = time.perf_counter()
    task.load(ctx.device)
    torch.manual_seed(seed)  # the new head's and the method's initialisation
    model = task.build_model()
    applied = method.prepare(model, model_cfg["head_modules"], model_cfg.get("train_pooler", False))
    if init_adapter:
        load_lora_init(model, require_adapter(init_adapter))
    model.to(ctx.device)
    if ctx.is_main:
        logger.info("%s", task.banner(method, applied.counts, settings, ctx.world_size, run_dir))

    metadata = {"task": task.name, "model": model_cfg["name"], "seed": seed}
    saved: dict[str, Any] = {}

    def keep_best(model: nn.Module, history: list[dict[str, Any]]) -> None:
        # The paper reports (and starts MRPC/RTE/STS-B from) the best epoch, so its weights are what is kept.
        *earlier, latest = history
        if all(latest[task.main_metric] > entry[task.main_metric] for entry in earlier):
            epoch = latest["epoch"]
            saved.update(path=method.save(model, run_dir, applied.modules_to_save, {**metadata, "epoch": epoch}))
            saved["epoch"] = epoch

    name = relative_run_dir(run_dir, plain["results_dir"])
    tracked = TrackedRun(run_dir / LOGS_DIR, name, portable_config(plain), tracking.project, tracking.mode)
    outcome = fit(
        model,
        task.train_items,
        task.collate,
        task.loss_sum,
        task.evaluate,
        settings,
        run_dir,
        ctx,
        fingerprint=f"{config_hash(plain)}-seed{seed}",
        param_groups=method.param_groups(model, settings.lr, settings.weight_decay),
        item_count=task.item_count,
        on_evaluated=keep_best if task.selects_best_epoch and ctx.is_main else None,
        open_tracker=partial(open_tracker, tracking.name, tracked),
    )
    if not ctx.is_main:
        return {}
    measured = task.finish(model, outcome, run_dir)
    summary = summarize_history(outcome.history, task.main_metric) if task.selects_best_epoch else None
    if not saved and summary is not None:  # resumed after its best epoch, whose weights were saved then
        saved = {"path": method.artefact, "epoch": summary["best_epoch"]}
    elif not saved:  # the final weights are the ones evaluated
        last = outcome.history[-1]["epoch"] if outcome.history else None
        saved = {
            "path": method.save(model, run_dir, applied.modules_to_save, {**metadata, "epoch": last}),
            "epoch": last,
        }

    result = run_record(plain, family, task.name, settings, applied, outcome, ctx, run_dir, started, inputs)
    result["method_info"] = {"label": method.display.label, "settings": method.settings()}
    result["hyperparameters"].update(task.extra_hyperparameters())
    result["hyperparameters"]["init_from"] = result["config"]["method"].get("init_adapter") or "pretrained"
    result["recipe"] = task.recipe(method)
    result.update(measured)
    result["saved"], result["saved_epoch"] = saved["path"], saved["epoch"]
    write_result(run_dir, result)
    remove_checkpoint(run_dir)
    logger.info(
        "%s %s seed %d: %s; trainable %s; %.0fs; %s",
        task.name,
        method.name,
        seed,
        task.headline(result),
        f"{applied.counts.trainable:,}",
        result["wall_time_s"],
        run_dir / "result.json",
    )
    return result
