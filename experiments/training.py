"""The training loop every runner shares: AdamW, linear warmup/decay, accumulation, AMP, DDP, resume.

Reproducibility is built in rather than bolted on:

* the batch order of each epoch is a permutation seeded by (seed, epoch), so a restart regenerates it
  and skips the batches already done;
* the random stream (dropout) is reseeded from (seed, step, rank) before every optimizer step, so a
  resumed run draws exactly what an uninterrupted one would;
* the loss of a global batch is the sum over its items divided by the batch's item count (examples, or
  target tokens for language modelling), whatever the number of processes and micro-batches.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import closing, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

from experiments.checkpointing import Checkpointer, TrainState
from experiments.distributed import DistContext
from experiments.progress import RunProgress, Throughput
from experiments.step_log import STEP_LOG_FILE, StepLog
from experiments.step_profile import StepProfiler
from experiments.tracking import Tracker, epoch_scalars, replay, step_scalars

__all__ = [
    "FitOutcome",
    "TrainSettings",
    "adamw",
    "autocast_dtype",
    "epoch_batches",
    "fit",
    "micro_batches",
    "resolve_precision",
    "seed_step_generators",
    "store_frozen_matmul_params",
    "to_device",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainSettings:
    """The loop's view of a ``train`` group; ``batch_size`` is the global batch (all processes, all micro-batches).

    Its values are checked where the group is, once: :class:`experiments.schema.TrainConfig`.
    """

    lr: float
    epochs: int
    batch_size: int
    per_device_batch_size: int | None = None
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    warmup_steps: int | None = None
    max_grad_norm: float | None = None
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    precision: str = "auto"
    max_steps: int | None = None
    checkpoint_every_steps: int = 500
    log_every_steps: int = 10
    frozen_weights_in_compute_dtype: bool = True
    compile: bool | str = "auto"
    profile_steps: int = 0
    profile_from_step: int = 20
    seed: int = 0

    def compile_mode(self) -> str | None:
        """The ``torch.compile`` mode for the training forward, or None for eager.

        ``auto`` is eager on every device. The runners pad each batch to its own longest sequence and end
        epochs on a short batch, so a compiled forward recompiles for new shapes: on an H200 a 156-step
        MiniLM RTE run took 96 s compiled against 19 s eager (``results/bench/runner_compile_gpu.md``).
        ``true`` (inductor's default mode) or a mode name (``reduce-overhead`` adds CUDA graphs) opt in,
        for long runs where compilation amortises; ``false`` is eager.
        """
        if self.compile in (False, "false", None, "auto"):
            return None
        return "default" if self.compile in (True, "true") else str(self.compile)


@dataclass
class FitOutcome:
    """What training produced, for the result file."""

    history: list[dict[str, Any]]
    global_step: int
    wall_time_s: float
    peak_memory_bytes: int
    tokens_seen: int
    resumed_from_step: int | None
    precision: str
    train_steps_per_s: float | None  # this process's optimizer steps per second of training, evaluation excluded


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` is bf16 autocast on a GPU that supports it, fp32 otherwise (always fp32 on CPU)."""
    if precision == "auto":
        cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return "bf16" if cuda_bf16 else "fp32"
    if precision not in {"fp32", "bf16", "fp16"}:
        raise ValueError(f"train.precision must be auto, fp32, bf16 or fp16; got {precision!r}")
    if precision != "fp32" and device.type != "cuda":
        raise ValueError(f"train.precision={precision} needs a GPU; on CPU use fp32 (or auto)")
    return precision


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of a resolved precision (None: fp32, no autocast)."""
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)


def _matmul_modules() -> tuple[type[nn.Module], ...]:
    kinds: list[type[nn.Module]] = [nn.Linear]
    try:
        from transformers.pytorch_utils import Conv1D

        kinds.append(Conv1D)
    except ImportError:  # pragma: no cover - transformers is part of the experiments extra
        pass
    return tuple(kinds)


def store_frozen_matmul_params(model: nn.Module, dtype: torch.dtype) -> int:
    """Keep frozen linear weights and biases in the autocast dtype; return how many tensors were converted.

    Autocast re-casts fp32 tensors to bf16 on every forward and caches the cast only for those that
    require grad, so frozen weights (LoRA's W0, BitFit's weights) and frozen biases would be re-read and
    re-cast every step. Storing them in bf16 once gives the bit-identical matmul inputs, half the memory,
    and no cast kernels. Only matmul modules are touched: norms and embeddings run in fp32 under autocast.
    """
    converted = 0
    for module in model.modules():
        if not isinstance(module, _matmul_modules()):
            continue
        for name in ("weight", "bias"):
            tensor = getattr(module, name, None)
            frozen = isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not tensor.requires_grad
            if frozen and tensor.dtype != dtype:
                tensor.data = tensor.data.to(dtype)
                converted += 1
    return converted


def epoch_batches(n_items: int, global_batch: int, seed: int, epoch: int) -> list[list[int]]:
    """The global batches of one epoch: a permutation seeded by (seed, epoch), cut into chunks."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(n_items, generator=generator).tolist()
    return [order[i : i + global_batch] for i in range(0, n_items, global_batch)]


def seed_step_generators(seed: int, device: torch.device) -> None:
    """Seed the CPU generator and ``device``'s with ``seed``, as ``torch.manual_seed`` seeds those two.

    The step loop reseeds before every step (dropout then depends only on the seed, step and rank, so a
    resumed run draws what an unbroken one would). ``torch.manual_seed`` would also queue the seed for every
    other backend (XPU, MTIA, ...), capturing a Python stack trace for each: 1.8 ms of a CPU host's time per step
    under the runner's call stack, where a host-bound GPU step takes ~15-20 ms.
    """
    torch.random.default_generator.manual_seed(seed)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        torch.cuda.default_generators[index].manual_seed(seed)
    elif device.type != "cpu":
        torch.manual_seed(seed)


def to_device(batch: Mapping[str, torch.Tensor], device: torch.device | str) -> dict[str, torch.Tensor]:
    """A collated batch on ``device``. Host tensors bound for a GPU are pinned first, so their copy is queued
    behind the running step instead of holding the host until the GPU has caught up (a copy from pageable memory
    may wait for the stream), and the next step can be queued while this one runs."""
    device = torch.device(device)
    if device.type != "cuda":
        return {key: value.to(device) for key, value in batch.items()}
    return {key: _pinned(value).to(device, non_blocking=True) for key, value in batch.items()}


def _pinned(value: torch.Tensor) -> torch.Tensor:
    return value.pin_memory() if value.device.type == "cpu" and not value.is_pinned() else value


def micro_batches(global_batch: Sequence[int], ctx: DistContext, per_device: int) -> list[list[int]]:
    """This rank's micro-batches of a global batch; every rank gets the same number (some may be empty)."""
    shard = list(global_batch[ctx.rank :: ctx.world_size])
    longest = math.ceil(len(global_batch) / ctx.world_size)
    n_micro = max(1, math.ceil(longest / per_device))
    return [shard[k * per_device : (k + 1) * per_device] for k in range(n_micro)]


def adamw(param_groups: list[dict[str, Any]], settings: TrainSettings, device: torch.device) -> torch.optim.Optimizer:
    """AdamW over the method's parameter groups (each with its own lr and weight decay)."""
    if not any(group["params"] for group in param_groups):
        raise ValueError("the model has no trainable parameters; check the method and its targets")
    return torch.optim.AdamW(
        [group for group in param_groups if group["params"]],
        lr=settings.lr,
        betas=(settings.adam_beta1, settings.adam_beta2),
        eps=settings.adam_eps,
        fused=device.type == "cuda",
    )


def _linear_schedule(optimizer: torch.optim.Optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    # The definition of HF's get_linear_schedule_with_warmup, which the authors' scripts used.
    def factor(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _peak_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def fit(
    model: nn.Module,
    dataset: Sequence[Any],
    collate: Callable[[list[Any]], dict[str, torch.Tensor]],
    loss_sum: Callable[[nn.Module, dict[str, torch.Tensor]], torch.Tensor],
    evaluate: Callable[[nn.Module, int], dict[str, Any]],
    settings: TrainSettings,
    run_dir: Path,
    ctx: DistContext,
    fingerprint: str,
    param_groups: list[dict[str, Any]],
    item_count: Callable[[Any], int] = lambda item: 1,
    on_evaluated: Callable[[nn.Module, list[dict[str, Any]]], None] | None = None,
    open_tracker: Callable[[], Tracker] | None = None,
) -> FitOutcome:
    """Train ``model``'s trainable parameters and evaluate after each epoch, resuming if possible.

    Args:
        dataset: indexable items; ``collate`` turns a list of them into a batch of tensors.
        loss_sum: the summed (not averaged) loss of a batch; normalised here by the global item count.
        evaluate: metrics of the unwrapped model after epoch ``e`` (1-based); called on rank 0 only.
        fingerprint: identifies the configuration, so a checkpoint is only resumed by the same one.
        param_groups: the optimizer's parameter groups, as the method builds them (lr, weight decay).
        item_count: how many loss terms an item contributes (1 per example, or its target tokens).
        on_evaluated: called on rank 0 with the evaluated model and the history so far, its last entry
            the epoch just evaluated (e.g. to save the best epoch's weights).
        open_tracker: opens (on rank 0, once a checkpoint if any is accepted) the tracker that mirrors each step
            record and epoch entry; a resumed run first replays into it what it kept of both.

    Every ``log_every_steps`` steps the batch loss, learning rate, gradient norm and throughput are appended to
    ``run_dir/train_log.jsonl`` (the training curve; entries past a resumed checkpoint are dropped).
    """
    device = ctx.device
    precision = resolve_precision(settings.precision, device)
    amp_dtype = autocast_dtype(precision)
    per_device = settings.per_device_batch_size or math.ceil(settings.batch_size / ctx.world_size)
    steps_per_epoch = math.ceil(len(dataset) / settings.batch_size)
    total_steps = settings.epochs * steps_per_epoch
    if settings.max_steps is not None:
        total_steps = min(total_steps, settings.max_steps)
    # A ratio rounds up, as Hugging Face's Trainer (which the authors' scripts ran) does.
    ratio_warmup = math.ceil(settings.warmup_ratio * total_steps)
    warmup = settings.warmup_steps if settings.warmup_steps is not None else ratio_warmup

    if precision in ("bf16", "fp16") and settings.frozen_weights_in_compute_dtype:
        store_frozen_matmul_params(model, amp_dtype)  # type: ignore[arg-type]
    optimizer = adamw(param_groups, settings, device)
    scheduler = _linear_schedule(optimizer, warmup, total_steps)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    checkpointer = Checkpointer(run_dir / "checkpoint", fingerprint)
    state, resumed_from = TrainState(), None
    if checkpointer.exists():
        state = checkpointer.load(model, optimizer, scheduler, scaler)
        resumed_from = state.global_step
        logger.info("resuming from step %d of %d (%s)", state.global_step, total_steps, checkpointer.path)
    step_log = StepLog(run_dir / STEP_LOG_FILE, after_step=state.global_step) if ctx.is_main else None
    logger.info(
        "%d optimizer steps (%d per epoch), %d warmup; precision %s on %s",
        total_steps,
        steps_per_epoch,
        warmup,
        precision,
        device,
    )
    trainable = [p for p in model.parameters() if p.requires_grad]
    wrapped = (
        DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        if ctx.enabled
        else model
    )
    mode = settings.compile_mode()
    if mode is not None:
        # Graph breaks and unsupported constructs fall back to eager instead of failing the run.
        torch._dynamo.config.suppress_errors = True
        wrapped = torch.compile(wrapped, mode=mode)
    autocast = (lambda: torch.autocast(device.type, dtype=amp_dtype)) if amp_dtype else nullcontext

    # Running sums stay on the device: reading them every step would stall the GPU.
    epoch_loss = torch.zeros((), device=device, dtype=torch.float64)
    tokens = torch.zeros((), device=device, dtype=torch.int64)

    def flush_sums() -> None:
        state.epoch_loss_sum += ctx.all_reduce_sum(float(epoch_loss))
        state.tokens_seen += int(ctx.all_reduce_sum(float(tokens)))
        epoch_loss.zero_()
        tokens.zero_()

    def save() -> None:
        flush_sums()
        if ctx.is_main:
            checkpointer.save(model, optimizer, scheduler, scaler, state)
            logger.info("checkpoint saved at step %d", state.global_step)
        ctx.barrier()

    started = time.perf_counter() - state.elapsed_s
    process_started, evaluating_s, first_step = time.perf_counter(), 0.0, state.global_step
    throughput = Throughput(state.tokens_seen)
    tracker = open_tracker() if open_tracker is not None and step_log is not None else None
    with (
        RunProgress(total_steps, state.global_step, settings.epochs, enabled=ctx.is_main) as progress,
        closing(tracker) if tracker is not None else nullcontext(),
        StepProfiler(run_dir, settings.profile_from_step, settings.profile_steps, device, ctx.is_main) as profiler,
    ):
        if tracker is not None and step_log is not None:
            replay(tracker, step_log.kept, state.history)
        profiler.plan(state.global_step, total_steps)
        for epoch in range(state.global_step // steps_per_epoch, settings.epochs):
            if state.global_step >= total_steps:
                break
            batches = epoch_batches(len(dataset), settings.batch_size, settings.seed, epoch)
            first = state.global_step - epoch * steps_per_epoch
            last = min(steps_per_epoch, total_steps - epoch * steps_per_epoch)
            model.train()
            position = first - 1
            for position in range(first, last):
                profiler.before_step(state.global_step)
                global_batch = batches[position]
                norm = sum(item_count(dataset[i]) for i in global_batch)
                seed_step_generators(settings.seed * 1_000_003 + state.global_step * 7919 + ctx.rank, device)
                micro = micro_batches(global_batch, ctx, per_device)
                step_loss = torch.zeros((), device=device)
                for k, indices in enumerate(micro):
                    weight = 1.0 if indices else 0.0  # an empty shard still joins the gradient all-reduce
                    batch = to_device(collate([dataset[i] for i in indices or global_batch[:1]]), device)
                    sync = k == len(micro) - 1 or not ctx.enabled
                    with nullcontext() if sync else wrapped.no_sync(), autocast():
                        loss = loss_sum(wrapped, batch) * (weight * ctx.world_size / norm)
                    scaler.scale(loss).backward()
                    step_loss += loss.detach()
                    if "attention_mask" in batch and weight:
                        tokens += batch["attention_mask"].sum()
                grad_norm = None
                if settings.max_grad_norm:
                    scaler.unscale_(optimizer)
                    grad_norm = torch.nn.utils.clip_grad_norm_(trainable, settings.max_grad_norm)
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                lr = scheduler.get_last_lr()[0]
                scheduler.step()
                state.global_step += 1
                # step_loss is this rank's share of the batch mean, scaled by world_size for DDP's averaging.
                epoch_loss += step_loss.double() * (norm / ctx.world_size)
                state.epoch_loss_count += norm
                throughput.count(len(global_batch))
                progress.advance(step_loss, lr, epoch + 1)
                if state.global_step % settings.log_every_steps == 0 or position == last - 1:
                    # The per-step host syncs: every log_every_steps steps, on every rank (all-reduces).
                    batch_loss = ctx.all_reduce_sum(float(step_loss)) / ctx.world_size
                    if not math.isfinite(batch_loss):
                        raise FloatingPointError(
                            f"the training loss is {batch_loss} at step {state.global_step} (checked every "
                            f"train.log_every_steps={settings.log_every_steps} steps); the run stops without a "
                            "result. Check the data for non-finite values, or lower train.lr"
                        )
                    rates = throughput.rates(state.tokens_seen + int(ctx.all_reduce_sum(float(tokens))))
                    if step_log is not None:
                        record = step_log.write(state.global_step, epoch + 1, batch_loss, lr, grad_norm, **rates)
                        if tracker is not None:
                            tracker.log(state.global_step, step_scalars(record))
                end_of_epoch = position == steps_per_epoch - 1 or state.global_step == total_steps
                if (
                    settings.checkpoint_every_steps
                    and state.global_step % settings.checkpoint_every_steps == 0
                    and not end_of_epoch
                ):
                    state.elapsed_s = time.perf_counter() - started
                    save()
                profiler.after_step(state.global_step)
            profiler.end_of_steps()  # an open window closes before the evaluation
            completed_epoch = position == steps_per_epoch - 1
            final = state.global_step >= total_steps
            flush_sums()
            if completed_epoch or final:
                entry: dict[str, Any] = {
                    "epoch": epoch + 1,
                    "step": state.global_step,
                    "train_loss": state.epoch_loss_sum / max(state.epoch_loss_count, 1),
                }
                if ctx.is_main:
                    evaluation_started = time.perf_counter()
                    model.eval()
                    with torch.no_grad(), autocast():
                        entry.update(evaluate(model, epoch + 1))
                    if on_evaluated is not None:
                        on_evaluated(model, [*state.history, entry])
                    model.train()
                    evaluating_s += time.perf_counter() - evaluation_started
                    logger.info(
                        "epoch %d/%d, step %d: %s", epoch + 1, settings.epochs, state.global_step, _metrics_text(entry)
                    )
                    if tracker is not None:
                        tracker.log(state.global_step, epoch_scalars(entry))
                state.history.append(entry)
            state.epoch_loss_sum = state.epoch_loss_count = 0.0
            state.elapsed_s = time.perf_counter() - started
            save()
            throughput.restart(state.tokens_seen)  # the next rates leave out this epoch's evaluation
    training_s = time.perf_counter() - process_started - evaluating_s
    steps = state.global_step - first_step
    return FitOutcome(
        history=state.history,
        global_step=state.global_step,
        wall_time_s=time.perf_counter() - started,
        peak_memory_bytes=_peak_memory(device),
        tokens_seen=state.tokens_seen,
        resumed_from_step=resumed_from,
        precision=precision,
        train_steps_per_s=steps / training_s if steps and training_s > 0 else None,
    )


def _metrics_text(entry: dict[str, Any]) -> str:
    """An epoch's losses and metrics on one line (its epoch and step, and nested results, left out)."""
    return " ".join(
        f"{key}={value:.4f}" if isinstance(value, float) else f"{key}={value}"
        for key, value in entry.items()
        if key not in ("epoch", "step") and not isinstance(value, dict | list)
    )
