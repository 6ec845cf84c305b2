"""Training-step and inference benchmark: every system (ours, PEFT, full FT, BitFit, loralib) in every mode.

    python -m benchmarks.training              # GPU: RoBERTa-base b32x128 and GPT-2 medium b8x512, bf16
    python -m benchmarks.training --quick      # CPU: tiny models, eager only, for a local check

Models are built from their configs with random weights (speed and memory do not depend on the values).
Each system runs in each mode (eager, ``torch.compile`` default, ``torch.compile`` + CUDA graphs) in one
process per model on the same workload: one step is forward, backward, a fused AdamW step and ``zero_grad``
under bf16 autocast (ours keeps frozen matmul weights in bf16, as the harness trains; the others keep fp32
parameters). Reported per variant: median step time over >= 30 steps after warm-up, peak memory, tokens/s,
executed TFLOP/s (FLOPs counted by ``torch.utils.flop_counter`` on one eager step) and its fraction of the
GPU's bf16 dense peak; ratios only to PEFT and full FT *in the same mode*. Inference: forward latency at
batch 1 x 128 of GPT-2 medium, our merged and unmerged LoRA, and PEFT's unmerged LoRA.
"""

from __future__ import annotations

import argparse
import copy
import gc
import math
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

import lora
from benchmarks.common import device_name, markdown_table, write_jsonl
from experiments.methods import BitFit
from experiments.training import store_frozen_matmul_params

VOCAB_QUICK = 1000
# bf16 dense peak of the cards this runs on (vendor datasheets, SXM parts).
BF16_PEAK_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0}


@dataclass(frozen=True)
class Workload:
    """A model family, its batch shape and how LoRA adapts it (the paper's settings)."""

    name: str
    batch: int
    seq: int
    targets: tuple[str, ...]
    r: int
    alpha: float
    peft_targets: tuple[str, ...]
    head: tuple[str, ...]


WORKLOADS = {
    "roberta-base": Workload("roberta-base", 32, 128, ("Wq", "Wv"), 8, 16, ("query", "value"), ("classifier",)),
    "gpt2-medium": Workload("gpt2-medium", 8, 512, ("Wq", "Wv"), 4, 32, ("c_attn",), ()),
}


def build_model(workload: Workload, quick: bool) -> nn.Module:
    """The workload's model from its config (tiny when ``quick``), SDPA attention, random weights."""
    from transformers import GPT2Config, GPT2LMHeadModel, RobertaConfig, RobertaForSequenceClassification

    torch.manual_seed(0)
    if workload.name == "roberta-base":
        size = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 128}
        config = RobertaConfig(
            vocab_size=VOCAB_QUICK if quick else 50265,
            max_position_embeddings=514,
            type_vocab_size=1,
            num_labels=2,
            **(size if quick else {}),
        )
        config._attn_implementation = "sdpa"
        return RobertaForSequenceClassification(config)
    size = (
        {"n_embd": 64, "n_layer": 2, "n_head": 2, "vocab_size": VOCAB_QUICK}
        if quick
        else {"n_embd": 1024, "n_layer": 24, "n_head": 16}
    )
    config = GPT2Config(**size)
    config._attn_implementation = "sdpa"
    return GPT2LMHeadModel(config)


def make_batch(workload: Workload, device: torch.device, quick: bool) -> dict[str, torch.Tensor]:
    batch, seq = (4, 32) if quick else (workload.batch, workload.seq)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(3, VOCAB_QUICK if quick else 50000, (batch, seq), generator=gen)
    data = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if workload.name == "roberta-base":
        data["labels"] = torch.randint(0, 2, (batch,), generator=gen)
    else:
        data["labels"] = ids.clone()
    return {k: v.to(device) for k, v in data.items()}


def loss_of(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Cross-entropy computed here (not by the model), the same for every variant."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    if logits.dim() == 2:
        return F.cross_entropy(logits.float(), batch["labels"])
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), batch["labels"][:, 1:].flatten())


# -- the variants ------------------------------------------------------------------------------------


def variant_full_ft(model: nn.Module, workload: Workload) -> nn.Module:
    return model


def variant_bitfit(model: nn.Module, workload: Workload) -> nn.Module:
    BitFit({"name": "bitfit"}).prepare(model, list(workload.head))
    return model


def variant_ours(model: nn.Module, workload: Workload) -> nn.Module:
    """Our library as the harness trains with it: frozen linear weights stored in bf16 on a GPU."""
    lora.inject_lora(model, list(workload.targets), r=workload.r, lora_alpha=workload.alpha)
    lora.mark_only_lora_as_trainable(model, trainable_modules=list(workload.head))
    if next(model.parameters()).is_cuda:
        store_frozen_matmul_params(model, torch.bfloat16)
    return model


def variant_peft(model: nn.Module, workload: Workload) -> nn.Module:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=workload.r,
        lora_alpha=workload.alpha,
        lora_dropout=0.0,
        target_modules=list(workload.peft_targets),
        fan_in_fan_out=workload.name == "gpt2-medium",
        modules_to_save=list(workload.head) or None,
    )
    return get_peft_model(model, config)


def variant_loralib(model: nn.Module, workload: Workload) -> nn.Module:
    """loralib's layers swapped in (MergedLinear q/v slices for GPT-2), weights copied."""
    import loralib

    for name, module in list(model.named_modules()):
        leaf = name.rpartition(".")[2]
        if workload.name == "roberta-base" and leaf in ("query", "value"):
            new = loralib.Linear(module.in_features, module.out_features, r=workload.r, lora_alpha=workload.alpha)
        elif workload.name == "gpt2-medium" and leaf == "c_attn":
            d_in, d_out = module.weight.shape
            new = loralib.MergedLinear(
                d_in,
                d_out,
                r=workload.r,
                lora_alpha=workload.alpha,
                enable_lora=[True, False, True],
                fan_in_fan_out=True,
            )
        else:
            continue
        new.load_state_dict(module.state_dict(), strict=False)
        parent = model.get_submodule(name.rpartition(".")[0])
        setattr(parent, leaf, new.to(module.weight.device))
    loralib.mark_only_lora_as_trainable(model)
    for name, param in model.named_parameters():
        if lora.in_modules(name, workload.head):
            param.requires_grad = True
    return model


# The systems compared, each built on a fresh copy of the same model.
SYSTEMS: dict[str, Callable[[nn.Module, Workload], nn.Module]] = {
    "ours": variant_ours,
    "peft": variant_peft,
    "full_ft": variant_full_ft,
    "bitfit": variant_bitfit,
    "loralib": variant_loralib,
}
# Execution modes; a ratio is only ever taken between two systems in the same mode.
MODES: dict[str, str | None] = {"eager": None, "compile": "default", "compile+cudagraphs": "reduce-overhead"}


@dataclass(frozen=True)
class Variant:
    system: str
    mode: str

    @property
    def name(self) -> str:
        return f"{self.system} [{self.mode}]"

    @property
    def compile_mode(self) -> str | None:
        return MODES[self.mode]


# Eager variants (seconds each) first; then each system's two compiled modes back to back, so the second
# reuses Inductor's on-disk FX-graph cache (CUDA graphs wrap the same kernels). A variant that would start
# past the time budget is reported as skipped.
VARIANTS = (
    *(Variant(system, "eager") for system in SYSTEMS),
    *(Variant(system, mode) for system in SYSTEMS for mode in ("compile", "compile+cudagraphs")),
)


# -- measuring ---------------------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def count_step_flops(model: nn.Module, batch: dict[str, torch.Tensor], device: torch.device) -> int:
    """FLOPs one training step executes (matmuls and attention; frozen weights get no weight-gradient GEMM)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        loss_of(model, batch).backward()
    model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def measure_training(
    model: nn.Module,
    batch: dict[str, torch.Tensor],
    device: torch.device,
    steps: int,
    warmup: int,
    compile_mode: str | None,
) -> dict[str, Any]:
    """Median step time (ms) and peak memory of forward + backward + fused AdamW + zero_grad."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, fused=device.type == "cuda")
    forward = torch.compile(model, mode=compile_mode) if compile_mode else model
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def step() -> None:
        with autocast:
            loss = loss_of(forward, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    if device.type == "cuda":  # before warm-up: compiled variants allocate their CUDA-graph pools there
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    for _ in range(warmup):
        step()
    _sync(device)
    warmup_s = time.perf_counter() - started
    times = []
    for _ in range(steps):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step()
            end.record()
            times.append((start, end))
        else:
            began = time.perf_counter()
            step()
            times.append(time.perf_counter() - began)
    _sync(device)
    ms = [s.elapsed_time(e) for s, e in times] if device.type == "cuda" else [t * 1e3 for t in times]
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return {
        "ms": statistics.median(ms),
        "ms_p10": sorted(ms)[len(ms) // 10],
        "peak_mem_gib": peak / 2**30 if peak else None,
        "warmup_s": warmup_s,
        "steps": steps,
    }


def measure_latency(model: nn.Module, ids: torch.Tensor, device: torch.device, iters: int) -> float:
    """Median wall time (ms) of one forward pass, synchronised, as a serving call would see it."""
    times = []
    with torch.no_grad():
        for i in range(iters + 5):
            _sync(device)
            began = time.perf_counter()
            model(input_ids=ids)
            _sync(device)
            if i >= 5:
                times.append((time.perf_counter() - began) * 1e3)
    return statistics.median(times)


def _peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in BF16_PEAK_TFLOPS.items() if key in name), None)


def run_training(
    workload: Workload, device: torch.device, quick: bool, deadline: float, steps: int, only: set[str] | None
) -> list[dict[str, Any]]:
    rows = []
    batch = make_batch(workload, device, quick)
    tokens = batch["input_ids"].numel()
    peak = _peak_tflops(device)
    for variant in VARIANTS:
        if only and not {variant.system, variant.mode, f"{variant.system}:{variant.mode}"} & only:
            continue
        if device.type == "cpu" and variant.compile_mode == "reduce-overhead":
            continue  # CUDA graphs need a GPU
        row: dict[str, Any] = {
            "benchmark": "train_step",
            "model": workload.name,
            "system": variant.system,
            "mode": variant.mode,
            "batch": f"{batch['input_ids'].shape[0]}x{batch['input_ids'].shape[1]}",
            "device": device_name(device),
        }
        if time.time() > deadline:
            rows.append({**row, "skipped": "time budget spent"})
            continue
        try:
            model = SYSTEMS[variant.system](build_model(workload, quick).to(device), workload).train()
            trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
            flops = count_step_flops(model, batch, device)
            result = measure_training(
                model, batch, device, steps, 3 if variant.compile_mode else 5, variant.compile_mode
            )
            tflops = flops / (result["ms"] / 1e3) / 1e12
            row.update(
                result,
                trainable=trainable,
                tokens_per_s=tokens / (result["ms"] / 1e3),
                tflops=tflops,
                step_tflop=flops / 1e12,
                mfu=tflops / peak if peak else None,
            )
        except Exception as error:
            row["error"] = f"{type(error).__name__}: {str(error)[:300]}"
        print(row, flush=True)
        rows.append(row)
        model = None
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        torch._dynamo.reset()
    return rows


def run_inference(device: torch.device, quick: bool, iters: int) -> list[dict[str, Any]]:
    """GPT-2 medium forward at batch 1 x 128 in bf16: base, ours merged/unmerged, PEFT unmerged."""
    workload = WORKLOADS["gpt2-medium"]
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    base = build_model(workload, quick).to(device, dtype).eval()
    high = VOCAB_QUICK if quick else 50000
    ids = torch.randint(3, high, (1, 32 if quick else 128), generator=torch.Generator().manual_seed(0)).to(device)
    ours = variant_ours(copy.deepcopy(base), workload).eval()  # eval merges
    for _, layer in lora.named_lora_layers(ours):
        nn.init.normal_(layer.lora_B, std=0.01)
        layer.merge()
    peft_model = variant_peft(copy.deepcopy(base), workload).eval()
    timings = {"base": measure_latency(base, ids, device, iters)}
    timings["ours_merged"] = measure_latency(ours, ids, device, iters)
    lora.unmerge(ours)
    timings["ours_unmerged"] = measure_latency(ours, ids, device, iters)
    timings["peft_unmerged"] = measure_latency(peft_model, ids, device, iters)
    return [
        {
            "benchmark": "inference_latency",
            "model": workload.name,
            "variant": name,
            "batch": f"1x{ids.shape[1]}",
            "device": device_name(device),
            "ms": ms,
            "vs_base": ms / timings["base"],
        }
        for name, ms in timings.items()
    ]


def with_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add each training row's step-time ratios to PEFT and to full FT of the same model *and mode*.

    ``vs_peft`` = PEFT's time / this time (> 1: faster than PEFT); ``vs_full_ft`` = this time / full FT's
    time (< 1: a cheaper step than full fine-tuning); ``mem_vs_peft`` = this peak / PEFT's peak.
    """
    measured = {
        (row["model"], row["mode"], row["system"]): row
        for row in rows
        if row.get("benchmark") == "train_step" and "ms" in row
    }
    for (model, mode, _), row in measured.items():
        peft, full = measured.get((model, mode, "peft")), measured.get((model, mode, "full_ft"))
        if peft:
            row["vs_peft"] = peft["ms"] / row["ms"]
            if row.get("peak_mem_gib") and peft.get("peak_mem_gib"):
                row["mem_vs_peft"] = row["peak_mem_gib"] / peft["peak_mem_gib"]
        if full:
            row["vs_full_ft"] = row["ms"] / full["ms"]
    return rows


def environment(device: torch.device) -> str:
    """The GPU (name, driver, SM clock now / max, power limit) and library versions the figures come from."""
    import peft
    import transformers

    versions = f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}"
    if device.type != "cuda":
        return f"{device_name(device)}; {versions}"
    query = "name,driver_version,clocks.sm,clocks.max.sm,power.limit"
    try:
        gpu = subprocess.run(
            ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"], capture_output=True, text=True, check=True
        ).stdout.splitlines()[device.index or 0]
    except (OSError, subprocess.CalledProcessError, IndexError):
        gpu = device_name(device)
    return f"{gpu} ({query}); CUDA {torch.version.cuda}; {versions}"


TRAIN_COLUMNS = [
    "mode", "system", "batch", "ms", "vs_peft", "vs_full_ft", "peak_mem_gib", "mem_vs_peft",
    "tokens_per_s", "step_tflop", "tflops", "mfu", "trainable",
]  # fmt: skip


def report(model: str, rows: list[dict[str, Any]], env: str, command: str) -> str:
    """One model's markdown: the training-step table by mode, inference latency, what was not measured."""
    order = {mode: i for i, mode in enumerate(MODES)}
    train = sorted(
        (r for r in rows if r["benchmark"] == "train_step" and "ms" in r),
        key=lambda r: (order[r["mode"]], list(SYSTEMS).index(r["system"])),
    )
    text = (
        f"# Training-step benchmark: {model}\n\n{env}\n\nCommand: `{command}` (one process). Step: forward, "
        "backward, fused AdamW, zero_grad; bf16 autocast on a GPU. `vs_peft` = PEFT's step time / this one and "
        "`vs_full_ft` = this step time / full FT's, both **in the same mode**; `mfu` = executed FLOPs / time "
        "/ the GPU's dense bf16 peak.\n\n"
        f"## Training step\n\n{markdown_table(train, TRAIN_COLUMNS)}\n"
    )
    infer = [r for r in rows if r["benchmark"] == "inference_latency"]
    if infer:
        text += f"\n## Inference latency\n\n{markdown_table(infer, ['variant', 'batch', 'ms', 'vs_base'])}\n"
    missing = [r for r in rows if "error" in r or "skipped" in r]
    if missing:
        lines = [f"- {r['system']} [{r['mode']}]: {r.get('error') or r.get('skipped')}" for r in missing]
        text += "\n## Not measured\n\n" + "\n".join(lines) + "\n"
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny models on CPU")
    parser.add_argument("--models", default="roberta-base,gpt2-medium")
    parser.add_argument(
        "--variants", default="", help=f"comma list of systems ({', '.join(SYSTEMS)}), modes or system:mode"
    )
    parser.add_argument("--steps", type=int, default=None, help="timed steps per variant (default 30; quick 5)")
    parser.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help="skip the variants that would start after this many seconds (e.g. to fit a time-limited machine)",
    )
    parser.add_argument("--out", type=Path, default=Path("results/bench"))
    args = parser.parse_args(argv)
    device = torch.device("cpu" if args.quick or not torch.cuda.is_available() else "cuda")
    torch.backends.cuda.matmul.allow_tf32 = True
    steps = args.steps or (5 if args.quick else 30)
    only = set(filter(None, args.variants.split(","))) or None
    names = args.models.split(",")
    env = environment(device)
    suffix = "gpu" if device.type == "cuda" else "cpu"
    started = time.time()
    for index, name in enumerate(names):  # each model gets an equal share of what is left of the budget
        left = math.inf if args.budget_s is None else args.budget_s - (time.time() - started)
        deadline = time.time() + left / (len(names) - index)
        rows = run_training(WORKLOADS[name], device, args.quick, deadline, steps, only)
        if name == "gpt2-medium":
            rows += run_inference(device, args.quick, 20 if args.quick else 50)
        rows = with_ratios(rows)
        command = f"python -m benchmarks.training --models {name}" + (" --quick" if args.quick else "")
        command += f" --variants {args.variants}" if args.variants else ""
        command += f" --budget-s {args.budget_s:g}" if args.budget_s is not None else ""
        write_jsonl(args.out / f"training_{name}_{suffix}.jsonl", [{"environment": env}, *rows])
        text = report(name, rows, env, command)
        (args.out / f"training_{name}_{suffix}.md").write_text(text, encoding="utf-8")
        print(text, flush=True)


if __name__ == "__main__":
    main()
