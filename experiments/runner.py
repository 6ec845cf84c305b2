"""What every runner does around training: its checked config and run directory, skip/resume/overwrite,
the Hydra shell that records failed sweep jobs, saving what trained, and best/last summaries.

The run directory is also Hydra's job folder (``hydra.run.dir: ${run_dir:glue}`` in conf/), so Hydra's
``.hydra/`` and ``<job>.log`` sit beside the run's files and nothing lands in ``outputs/``.

A process works in one run directory at a time: :func:`prepare_run_dir` locks it (releasing the one the
process worked in before) and :func:`release_run_dir` (called after each Hydra job and at exit) frees it.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch.nn as nn
from omegaconf import DictConfig, OmegaConf

import lora
from experiments.atomic import remove_stale_temporaries, write_json_atomic
from experiments.cli import JobFailed
from experiments.distributed import DistContext
from experiments.fingerprints import sha256_file
from experiments.methods import AppliedMethod
from experiments.recipes import register_resolvers
from experiments.results import (
    environment,
    method_tag,
    portable_config,
    portable_path,
    read_result,
    write_failure,
)
from experiments.run_lock import LOCK_FILE, RunDirLock
from experiments.schema import ConfigError, validate_config
from experiments.sweep_summary import write_job_outcome
from experiments.tracking import require_tracker
from experiments.training import FitOutcome, TrainSettings

__all__ = [
    "INPUTS_FILE",
    "RunInputsChangedError",
    "adapter_fingerprint",
    "check_run_inputs",
    "checked_config",
    "hydra_output_dir",
    "load_lora_init",
    "plain_config",
    "prepare_run_dir",
    "register_hydra_resolvers",
    "relative_run_dir",
    "release_run_dir",
    "remove_checkpoint",
    "require_adapter",
    "run_directory",
    "run_hydra_job",
    "run_record",
    "summarize_history",
]

logger = logging.getLogger(__name__)


def checked_config(cfg: DictConfig | Mapping[str, Any], family: str) -> tuple[Any, dict[str, Any]]:
    """The typed and the resolved config of a ``family`` run, once its task's family, the typed schema and the
    installed packages accept it.

    Raises:
        ConfigError: a task of another family, or an unknown, mistyped or out-of-range setting.
        TrackerUnavailableError: the ``logger`` backend's package is missing.
    """
    task_family = cfg["task"].get("family")
    if task_family != family:  # before resolving: a task of another family has no recipe here
        raise ConfigError(
            f"task={cfg['task']['name']} is a {task_family} task; run it with python -m experiments.{task_family}"
        )
    typed = validate_config(cfg, family)
    require_tracker(typed.logger.name)
    return typed, plain_config(cfg)


def plain_config(cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    """The fully resolved config as plain Python containers (the Hydra section dropped)."""
    register_resolvers()
    if isinstance(cfg, DictConfig):
        data = OmegaConf.to_container(cfg, resolve=True)
    else:
        data = OmegaConf.to_container(OmegaConf.create(dict(cfg)), resolve=True)
    data.pop("hydra", None)  # type: ignore[union-attr]
    return data  # type: ignore[return-value]


_SAFE_NAME = re.compile(r"[A-Za-z0-9._-]+")


def _check_path_component(key: str, value: Any) -> None:
    """Refuse a config value that would not stay one directory level below ``results_dir``."""
    text = str(value)
    if _SAFE_NAME.fullmatch(text) and set(text) != {"."}:
        return
    hint = " (a model folder goes in model.name_or_path)" if key == "model.name" else ""
    raise ValueError(
        f"{key}={text!r} cannot be part of a run directory: use only letters, digits, '.', '_' and '-', "
        f"with no path separator and not '.' or '..'; set {key} to a plain name{hint}"
    )


def run_directory(cfg: Mapping[str, Any], family: str) -> Path:
    """``<results_dir>/<family>/<model>/<task>/<method tag>/seed<seed>``: a function of the config.

    Every config value in the path is checked, so no value can place a run outside ``results_dir``.
    """
    method = cfg["method"]
    named = {
        "model.name": cfg["model"]["name"],
        "task.name": cfg["task"]["name"],
        "method.name": method["name"],
        "preset.name": cfg["preset"]["name"],
        "seed": cfg["seed"],
    }
    if "r" in method:  # a low-rank method's tag holds its rank and targets
        named["method.r"] = method["r"]
        named.update({f"method.targets[{i}]": target for i, target in enumerate(method["targets"])})
    for key, value in named.items():
        _check_path_component(key, value)
    return (
        Path(cfg["results_dir"])
        / family
        / cfg["model"]["name"]
        / cfg["task"]["name"]
        / method_tag(cfg)
        / f"seed{cfg['seed']}"
    )


def relative_run_dir(run_dir: Path, results_dir: str | Path) -> str:
    """A run directory as results, trackers and sweep records name it: relative to ``results_dir``, POSIX."""
    return Path(run_dir).relative_to(results_dir).as_posix()


def _run_dir_resolver(family: str, *, _root_: DictConfig) -> str:
    """Resolver ``${run_dir:<family>}`` (``hydra.run.dir``): the checked run directory, absolute.

    It raises what :func:`checked_config` raises, so a refused config stops before Hydra makes a folder.
    """
    job = OmegaConf.masked_copy(_root_, [key for key in _root_ if key != "hydra"])  # hydra.* refers back here
    _, plain = checked_config(job, family)
    return str(run_directory(plain, family).absolute())


def _sweep_job_dir_resolver(family: str, *, _root_: DictConfig) -> str:
    """Resolver ``${sweep_job_dir:<family>}`` (``hydra.sweep.subdir``): a job's run directory.

    A job whose config is refused gets ``<job number>`` inside the sweep's folder instead, where its
    ``failure.json`` goes, so the other jobs still run.
    """
    try:
        return _run_dir_resolver(family, _root_=_root_)
    except ValueError:  # ConfigError, or a value that cannot name a directory
        return str(_root_.hydra.job.num)


def register_hydra_resolvers() -> None:
    """Make ``${recipe:...}``, ``${run_dir:...}`` and ``${sweep_job_dir:...}`` available to configs (idempotent)."""
    register_resolvers()
    for name, resolver in (("run_dir", _run_dir_resolver), ("sweep_job_dir", _sweep_job_dir_resolver)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)


@dataclass
class _WorkingDir:
    """The run directory this process works in, its lock (main process only), and whether it was done."""

    path: Path
    lock: RunDirLock | None
    already_complete: bool


_working: _WorkingDir | None = None


INPUTS_FILE = "inputs.json"


def adapter_fingerprint(adapter_dir: str | Path | None) -> str | None:
    """``sha256:`` of an adapter's config, which records the checksum of its tensors; None without one."""
    if not adapter_dir:
        return None
    return f"sha256:{sha256_file(require_adapter(adapter_dir) / 'adapter_config.json')}"


class RunInputsChangedError(RuntimeError):
    """The run directory holds a run of the same config made from other data or model files."""


def check_run_inputs(run_dir: Path, inputs: Mapping[str, str | None]) -> None:
    """Record the fingerprints of what a run reads, or refuse when the directory's run read other files.

    The run directory is named by the config alone, so the same command pointed at other data (or other
    weights) would otherwise return that run's result, or resume its checkpoint, as if they were this one's.
    """
    path = Path(run_dir) / INPUTS_FILE
    kept = read_result(run_dir) is not None or (Path(run_dir) / "checkpoint").exists()
    recorded = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    changed = [key for key in sorted({*(recorded or {}), *inputs}) if (recorded or {}).get(key) != inputs.get(key)]
    if recorded is not None and not changed:
        return
    if not kept:  # nothing to protect (a new directory, or an earlier start that failed before training)
        write_json_atomic(path, dict(inputs))
        return
    if recorded is None:
        reason = "holds a result or checkpoint whose inputs were never recorded"
    else:
        what = "; ".join(f"{key}: {recorded.get(key)} there, {inputs.get(key)} now" for key in changed)
        reason = f"holds a run of this config made from other inputs ({what})"
    raise RunInputsChangedError(
        f"{run_dir} {reason}, so its result and checkpoint do not belong to this run; pass overwrite=true to "
        "discard it, or set results_dir to another folder to keep both"
    )


def prepare_run_dir(
    cfg: Mapping[str, Any], family: str, inputs: Mapping[str, str | None]
) -> tuple[Path, dict[str, Any] | None]:
    """Lock the run directory and return it with its finished result, if any (``overwrite`` clears both).

    The lock is taken before anything in the directory changes, so a second run of the same config
    refuses instead of clearing or overwriting the first one's files. Temporaries of interrupted atomic
    writes are removed. A finished result or checkpoint is only reused when ``inputs`` (fingerprints of
    the data and model files) match the ones recorded with it. Only the main process (``RANK`` 0) of a
    distributed run locks, clears and checks.
    """
    global _working
    run_dir = run_directory(cfg, family)
    release_run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = None
    if int(os.environ.get("RANK", "0")) == 0:
        lock = RunDirLock(run_dir)
        lock.acquire()
        if cfg.get("overwrite"):
            kept = {LOCK_FILE, *_hydra_job_files(run_dir)}
            for child in run_dir.iterdir():
                if child.name in kept:
                    continue
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        stale = remove_stale_temporaries(run_dir)
        if stale:
            logger.warning("removed %d temporary file(s) of an interrupted write in %s", len(stale), run_dir)
        try:
            check_run_inputs(run_dir, inputs)
        except RunInputsChangedError:
            lock.release()
            raise
    finished = read_result(run_dir)
    _working = _WorkingDir(run_dir, lock, finished is not None)
    return run_dir, finished


def release_run_dir() -> None:
    """Unlock the run directory this process worked in (a no-op if none)."""
    global _working
    if _working is not None and _working.lock is not None:
        _working.lock.release()
    _working = None


atexit.register(release_run_dir)


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


def _hydra_job_files(run_dir: Path) -> set[str]:
    """The names of the files this Hydra job just wrote into ``run_dir`` (its config folder and log)."""
    output_dir = hydra_output_dir()
    if output_dir is None or output_dir.resolve() != run_dir.resolve():
        return set()
    from hydra.core.hydra_config import HydraConfig

    hydra = HydraConfig.get()
    return {name for name in (hydra.output_subdir, f"{hydra.job.name}.log") if name}


def _in_multirun() -> bool:
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        return HydraConfig.get().mode == RunMode.MULTIRUN
    except (ImportError, ValueError):
        return False


def run_hydra_job(run: Callable[[DictConfig], dict[str, Any]], cfg: DictConfig, family: str) -> float | None:
    """Run one job; inside a multirun a failure is recorded in ``failure.json`` and the sweep goes on.

    A single run's error leaves as :class:`experiments.cli.JobFailed`, which the command prints as one
    line; called without Hydra, the error itself is raised. Each multirun job also leaves its outcome
    (done, skipped, failed) in the sweep's folder, for the summary that
    :class:`experiments.sweep_summary.SweepSummary` prints when the sweep ends.
    Returns the main metric (for Hydra sweepers that optimise it) or None for a failed sweep job.
    """
    try:
        result = run(cfg)
        skipped = _working is not None and _working.already_complete
    except Exception as error:
        if not _in_multirun():
            if hydra_output_dir() is None:
                raise  # a caller that is not Hydra's command line
            raise JobFailed(error) from error
        path = _record_failure(cfg, family, error)
        logger.error("FAILED (%s: %s); recorded in %s; the sweep continues", type(error).__name__, error, path)
        _record_job("failed", error=f"{type(error).__name__}: {error}")
        return None
    finally:
        release_run_dir()
    _record_job("skipped" if skipped else "done", run_dir=result.get("run_dir"))
    return result.get("main_metric_value")


def _record_failure(cfg: DictConfig, family: str, error: Exception) -> Path:
    """Write ``failure.json`` into the job's run directory (or its Hydra folder if there is none)."""
    identity: dict[str, Any] = {"family": family, "overrides": _overrides()}
    try:
        plain = plain_config(cfg)
        identity["overrides"] = [_portable_override(o, plain.get("results_dir")) for o in identity["overrides"]]
        identity.update(
            {
                "task": plain["task"]["name"],
                "model": plain["model"]["name"],
                "method": plain["method"]["name"],
                "seed": plain["seed"],
                "config": portable_config(plain),
            }
        )
        if isinstance(error, ConfigError):  # refused before any work: no run directory for it
            raise error
        directory = run_directory(plain, family)
    except Exception:
        directory = hydra_output_dir() or Path(".")
    return write_failure(directory, identity, error)


def _portable_override(override: str, results_dir: str | None) -> str:
    key, sep, value = override.partition("=")
    return f"{key}{sep}{portable_path(value, results_dir)}" if sep else override


def _record_job(status: str, run_dir: str | None = None, error: str | None = None) -> None:
    if _in_multirun():
        from hydra.core.hydra_config import HydraConfig

        hydra = HydraConfig.get()
        write_job_outcome(Path(hydra.sweep.dir), hydra.job.num, status, run_dir, error)


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
    inputs: Mapping[str, str | None],
) -> dict[str, Any]:
    """The fields every runner's ``result.json`` shares: identity, settings, counts, cost, provenance.

    Paths are portable: ``run_dir`` is relative to ``results_dir``; the model is its name, its source as
    :func:`portable_path` writes it, and for a local folder the sha256 fingerprint of its weights.

    Runners add their own: task-specific hyperparameters, ``metrics``, ``recipe`` and ``data``.
    """
    method, model_cfg, counts = plain["method"], plain["model"], applied.counts
    return {
        "status": "completed",
        "family": family,
        "task": task_name,
        "model": model_cfg["name"],
        "model_source": portable_path(model_cfg["name_or_path"]),
        "model_fingerprint": inputs.get("model"),
        "inputs": dict(inputs),
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
        "train_steps_per_s": outcome.train_steps_per_s,
        "world_size": ctx.world_size,
        "environment": environment(ctx.device),
        "run_dir": relative_run_dir(run_dir, plain["results_dir"]),
        "config": portable_config(plain),
    }


def summarize_history(history: Sequence[Mapping[str, Any]], main_key: str) -> dict[str, Any]:
    """Best epoch by ``main_key`` (the paper reports the best epoch) and the last epoch."""
    scored = [entry for entry in history if main_key in entry]
    if not scored:
        return {"best": None, "last": None, "best_epoch": None}
    best = max(scored, key=lambda entry: entry[main_key])
    return {"best": dict(best), "last": dict(scored[-1]), "best_epoch": best["epoch"]}


def require_adapter(adapter_dir: str | Path) -> Path:
    """The adapter folder ``method.init_adapter`` names, checked before any heavy loading."""
    path = Path(adapter_dir).expanduser()
    if not (path / "adapter_config.json").is_file():
        raise FileNotFoundError(
            f"method.init_adapter={adapter_dir}: no adapter there; point it at the 'adapter' folder of a "
            "finished LoRA run (e.g. runs/glue/<model>/mnli/<tag>/seed0/adapter)"
        )
    return path


def load_lora_init(model: nn.Module, adapter_dir: str | Path) -> None:
    """Start from a trained adapter's LoRA matrices (not its head), as the paper's MNLI-initialised runs."""
    lora.load_adapter(model, require_adapter(adapter_dir), lora_only=True)
