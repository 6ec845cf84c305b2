"""The runner's pace against its own bare training step: same model, method, batches, precision and device.

    python -m benchmarks.runner_rate glue experiment=minilm_rte data.dir=DIR model.name_or_path=DIR \
        method=lora train.max_steps=500

First one job runs through the real runner (``experiments.run``: collation, the step loop's bookkeeping, the
progress bar, the step log, checkpoints) into a temporary results folder. Two of its rates are read: its
``train_steps_per_s`` (optimizer steps per second of training; the runner leaves evaluation out) and its all-in
rate, steps over its ``wall_time_s`` (from after the inputs are fingerprinted: data and model loading, training,
evaluation after each epoch, checkpoints, the saved adapter). Then, in the same process, the same model and
method are built again, the runner's first ``train.max_steps`` batches (its seeded epoch order) are collated and
moved to the device beforehand, and forward + backward + gradient clipping + the loop's own AdamW + ``zero_grad``
are timed on them with nothing else in the way, after three untimed steps on the first of them (the runner ran
first, cold, so the comparison leans against the runner). runner / bare is the share of the runner's training
time that is the step itself; all-in / bare the share of the whole run. A short job is dominated by the runner's
first, cold steps; a whole run (train.max_steps = its steps) measures what a user waits for. For E2E add
data.max_eval_mrs=2, since the runner decodes the test set after training.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import device_name, markdown_table, write_jsonl
from experiments.config import compose_config
from experiments.distributed import setup_distributed
from experiments.methods import get_method
from experiments.run import run, train_settings
from experiments.runner import plain_config
from experiments.tasks import FAMILIES
from experiments.training import (
    adamw,
    autocast_dtype,
    epoch_batches,
    resolve_precision,
    store_frozen_matmul_params,
    to_device,
)

__all__ = ["bare_steps_per_s", "main", "measure"]

UNTIMED_STEPS = 3
COLUMNS = (
    *("task", "model", "method", "batch", "steps"),
    *("runner_steps_per_s", "runner_all_in_steps_per_s", "bare_steps_per_s", "runner_vs_bare", "runner_all_in_vs_bare"),
)


def bare_steps_per_s(plain: dict[str, Any], family: str) -> float:
    """Optimizer steps per second of the runner's step alone on the runner's own first batches."""
    task = FAMILIES[family](plain)
    method = get_method(plain["method"])
    settings = train_settings(plain["train"], plain["seed"])
    device = setup_distributed(plain["device"]).device
    task.load(device)
    torch.manual_seed(plain["seed"])
    model = task.build_model()
    method.prepare(model, plain["model"]["head_modules"], plain["model"].get("train_pooler", False))
    model.to(device).train()
    amp_dtype = autocast_dtype(resolve_precision(settings.precision, device))
    if amp_dtype is not None and settings.frozen_weights_in_compute_dtype:
        store_frozen_matmul_params(model, amp_dtype)
    optimizer = adamw(method.param_groups(model, settings.lr, settings.weight_decay), settings, device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    items, steps = task.train_items, settings.max_steps
    per_epoch = -(-len(items) // settings.batch_size)
    epochs = [epoch_batches(len(items), settings.batch_size, settings.seed, e) for e in range(-(-steps // per_epoch))]
    order = [epochs[step // per_epoch][step % per_epoch] for step in range(steps)]
    batches = [
        (
            to_device(task.collate([items[i] for i in b]), device),
            sum(task.item_count(items[i]) for i in b),
        )
        for b in order
    ]
    autocast = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else nullcontext()

    def step(batch: dict[str, torch.Tensor], norm: int) -> None:
        with autocast:
            loss = task.loss_sum(model, batch) / norm
        loss.backward()
        if settings.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(trainable, settings.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for batch, norm in batches[:UNTIMED_STEPS]:
        step(batch, norm)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    for batch, norm in batches:
        step(batch, norm)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return steps / (time.perf_counter() - started)


def measure(family: str, overrides: list[str]) -> dict[str, Any]:
    """One row: the runner's and the bare step's rates on the job ``overrides`` describe (needs train.max_steps)."""
    with tempfile.TemporaryDirectory() as results:
        cfg = compose_config(family, [*overrides, f"results_dir={results}", "logger=none", "overwrite=true"])
        plain = plain_config(cfg)
        if not plain["train"]["max_steps"]:
            raise SystemExit("benchmarks.runner_rate needs train.max_steps=N (the steps both loops time)")
        result = run(cfg, family)
    runner_rate, all_in_rate = result["train_steps_per_s"], result["steps"] / result["wall_time_s"]
    bare_rate = bare_steps_per_s(plain, family)
    return {
        "task": plain["task"]["name"],
        "model": plain["model"]["name"],
        "method": plain["method"]["name"],
        "batch": plain["train"]["batch_size"],
        "steps": result["steps"],
        "runner_steps_per_s": runner_rate,
        "runner_all_in_steps_per_s": all_in_rate,
        "bare_steps_per_s": bare_rate,
        "runner_vs_bare": runner_rate / bare_rate,
        "runner_all_in_vs_bare": all_in_rate / bare_rate,
        "device": device_name(setup_distributed(plain["device"]).device),
        "overrides": [_portable(override) for override in overrides],
    }


def _portable(override: str) -> str:
    """An override with a machine path as its value reads ``key=DIR``, so the committed record names no machine."""
    key, _, value = override.partition("=")
    return f"{key}=DIR" if value.startswith(("/", "~")) else override


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("family", choices=sorted(FAMILIES))
    parser.add_argument("overrides", nargs="+", help="the job's Hydra overrides, train.max_steps=N among them")
    parser.add_argument("--out", type=Path, default=Path("runs/bench"), help="folder for runner_rate.{md,jsonl}")
    args = parser.parse_args(argv)
    row = measure(args.family, args.overrides)
    args.out.mkdir(parents=True, exist_ok=True)
    write_jsonl(args.out / "runner_rate.jsonl", [row])
    table = markdown_table([row], COLUMNS)
    command = f"python -m benchmarks.runner_rate {args.family} {' '.join(row['overrides'])}"
    (args.out / "runner_rate.md").write_text(f"{row['device']}\n\n    {command}\n\n{table}\n", encoding="utf-8")
    print(table)


if __name__ == "__main__":
    main()
