"""What every runner does around training: its run directory, skip/resume/overwrite, the Hydra shell
that records failed sweep jobs, saving what trained, and best/last summaries."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch.nn as nn
from omegaconf import DictConfig, OmegaConf

import lora
from experiments.atomic import atomic_write
from experiments.distributed import DistContext
from experiments.methods import AppliedMethod
from experiments.recipes import register_resolvers
from experiments.results import environment, method_tag, read_result, write_failure
from experiments.training import FitOutcome, TrainSettings

__all__ = [
    "hydra_output_dir",
    "plain_config",
    "prepare_run_dir",
    "remove_checkpoint",
    "run_hydra_job",
    "run_record",
    "save_trained",
    "summarize_history",
]


def plain_config(cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    """The fully resolved config as plain Python containers (the Hydra section dropped)."""
    register_resolvers()
    if isinstance(cfg, DictConfig):
        data = OmegaConf.to_container(cfg, resolve=True)
    else:
        data = OmegaConf.to_container(OmegaConf.create(dict(cfg)), resolve=True)
    data.pop("hydra", None)  # type: ignore[union-attr]
    return data  # type: ignore[return-value]


def run_directory(cfg: Mapping[str, Any], family: str) -> Path:
    """``<results_dir>/<family>/<model>/<task>/<method tag>/seed<seed>``: a function of the config."""
    return (
        Path(cfg["results_dir"])
        / family
        / cfg["model"]["name"]
        / cfg["task"]["name"]
        / method_tag(cfg)
        / f"seed{cfg['seed']}"
    )


def prepare_run_dir(cfg: Mapping[str, Any], family: str) -> tuple[Path, dict[str, Any] | None]:
    """The run directory and its finished result, if any (``overwrite`` clears both)."""
    run_dir = run_directory(cfg, family)
    if cfg.get("overwrite") and run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir, read_result(run_dir)


def remove_checkpoint(run_dir: Path) -> None:
    """Drop the resume checkpoint once the result is written (a full-FT one holds the optimizer state)."""
    shutil.rmtree(Path(run_dir) / "checkpoint", ignore_errors=True)


def hydra_output_dir() -> Path | None:
    """The Hydra job's output directory when running under Hydra, else None."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except (ImportError, ValueError):
        return None


def _in_multirun() -> bool:
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        return HydraConfig.get().mode == RunMode.MULTIRUN
    except (ImportError, ValueError):
        return False


def run_hydra_job(run: Callable[[DictConfig], dict[str, Any]], cfg: DictConfig, family: str) -> float | None:
    """Run one job; inside a multirun a failure is recorded in ``failure.json`` and the sweep goes on.

    Returns the main metric (for Hydra sweepers that optimise it) or None for a failed sweep job.
    """
    try:
        result = run(cfg)
    except Exception as error:
        if not _in_multirun():
            raise
        identity: dict[str, Any] = {"family": family, "overrides": _overrides()}
        try:
            plain = plain_config(cfg)
            identity.update(
                {
                    "task": plain["task"]["name"],
                    "model": plain["model"]["name"],
                    "method": plain["method"]["name"],
                    "seed": plain["seed"],
                    "config": plain,
                }
            )
            directory = run_directory(plain, family)
        except Exception:
            directory = hydra_output_dir() or Path(".")
        path = write_failure(directory, identity, error)
        print(f"FAILED ({type(error).__name__}: {error}); recorded in {path}; the sweep continues", flush=True)
        return None
    return result.get("main_metric_value")


def _overrides() -> list[str]:
    try:
        from hydra.core.hydra_config import HydraConfig

        return list(HydraConfig.get().overrides.task)
    except (ImportError, ValueError):
        return []


def run_record(
    plain: Mapping[str, Any],
    family: str,
    task_name: str,
    settings: TrainSettings,
    applied: AppliedMethod,
    outcome: FitOutcome,
    ctx: DistContext,
    run_dir: Path,
    started: float,
) -> dict[str, Any]:
    """The fields every runner's ``result.json`` shares: identity, settings, counts, cost, provenance.

    Runners add their own: task-specific hyperparameters, ``metrics``, ``recipe`` and ``data``.
    """
    method, model_cfg, counts = plain["method"], plain["model"], applied.counts
    return {
        "status": "completed",
        "family": family,
        "task": task_name,
        "model": model_cfg["name"],
        "model_source": model_cfg["name_or_path"],
        "method": method["name"],
        "seed": plain["seed"],
        "preset": plain["preset"]["name"],
        "hyperparameters": {
            **{key: method.get(key) for key in ("r", "lora_alpha", "lora_dropout", "targets", "use_rslora")},
            "lr": settings.lr,
            "global_batch_size": settings.batch_size,
            "epochs": settings.epochs,
            "max_seq_length": plain["train"]["max_seq_length"],
            "weight_decay": settings.weight_decay,
            "warmup_ratio": settings.warmup_ratio,
            "warmup_steps": settings.warmup_steps,
            "max_grad_norm": settings.max_grad_norm,
        },
        "trainable_params": counts.trainable,
        "trainable_params_with_head": counts.trainable_with_head,
        "lora_params": counts.lora,
        "total_params": counts.total,
        "adapted_modules": applied.adapted_modules,
        "steps": outcome.global_step,
        "wall_time_s": round(time.perf_counter() - started, 2),
        "train_time_s": round(outcome.wall_time_s, 2),
        "tokens_seen": outcome.tokens_seen,
        "peak_memory_bytes": outcome.peak_memory_bytes,
        "precision": outcome.precision,
        "resumed_from_step": outcome.resumed_from_step,
        "world_size": ctx.world_size,
        "environment": environment(ctx.device),
        "run_dir": str(run_dir),
        "config": dict(plain),
    }


def summarize_history(history: Sequence[Mapping[str, Any]], main_key: str) -> dict[str, Any]:
    """Best epoch by ``main_key`` (the paper reports the best epoch) and the last epoch."""
    scored = [entry for entry in history if main_key in entry]
    if not scored:
        return {"best": None, "last": None, "best_epoch": None}
    best = max(scored, key=lambda entry: entry[main_key])
    return {"best": dict(best), "last": dict(scored[-1]), "best_epoch": best["epoch"]}


def save_trained(
    model: nn.Module,
    method: Mapping[str, Any],
    run_dir: Path,
    head_modules: Sequence[str],
    metadata: Mapping[str, Any],
    save_full_weights: bool = False,
) -> str | None:
    """Save what trained, for reuse: the LoRA adapter (with head), or the trainable tensors (BitFit)."""
    if method["name"] == "lora":
        path = lora.save_adapter(
            model,
            run_dir / "adapter",
            bias=method.get("bias", "none"),
            modules_to_save=list(head_modules),
            metadata=dict(metadata),
        )
        return str(path)
    if method["name"] == "full_ft" and not save_full_weights:
        return None
    from safetensors.torch import save_file

    tensors = {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}
    target = run_dir / "trainable.safetensors"
    atomic_write(target, lambda tmp: save_file(tensors, str(tmp), metadata={"method": method["name"]}))
    return str(target)


def load_lora_init(model: nn.Module, adapter_dir: str | Path) -> None:
    """Start from a trained adapter's LoRA matrices (not its head), as the paper's MNLI-initialised runs."""
    path = Path(adapter_dir).expanduser()
    if not (path / "adapter_config.json").is_file():
        raise FileNotFoundError(
            f"method.init_adapter={adapter_dir}: no adapter there; point it at the 'adapter' folder of a "
            "finished LoRA run (e.g. results/glue/<model>/mnli/<tag>/seed0/adapter)"
        )
    lora.load_adapter(model, path, lora_only=True)
