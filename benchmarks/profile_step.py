"""Where a training step's time goes: a torch.profiler trace of one benchmark variant, summarised.

    python -m benchmarks.profile_step --model gpt2-medium --variants ours,peft,full_ft --mode default

Each variant of :mod:`benchmarks.training` is built, compiled in ``--mode`` (``eager``, ``default``,
``reduce-overhead``), warmed up, and profiled over a few steps. Written to ``--out``: per variant a Chrome
trace (``<model>_<variant>_<mode>.json.gz``, open in Perfetto) and one markdown summary for all of them:
step time, kernels per step, TorchDynamo's graph count and graph breaks, and the GPU time per kernel
category (GEMM, attention, elementwise/reduction, copies, optimizer), then the top kernels.
"""

from __future__ import annotations

import argparse
import gzip
import re
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import device_name
from benchmarks.training import SYSTEMS, WORKLOADS, build_model, loss_of, make_batch

# Kernel-name patterns, first match wins; what is left is "other".
CATEGORIES = (
    ("attention", re.compile(r"flash|fmha|attention|sdpa|efficient_attention", re.I)),
    ("gemm", re.compile(r"gemm|cutlass|sm90_xmma|nvjet|cublas|matmul|_mm_|addmm|bmm", re.I)),
    ("optimizer", re.compile(r"adam|multi_tensor|foreach", re.I)),
    ("copy/cast", re.compile(r"copy|cast|convert|to_copy|memcpy|memset|fill", re.I)),
    ("loss/softmax", re.compile(r"softmax|cross_entropy|nll|log_softmax", re.I)),
    ("triton fused", re.compile(r"^triton_", re.I)),
    ("elementwise/reduce", re.compile(r"elementwise|reduce|vectorized|unrolled", re.I)),
)


def category(kernel: str) -> str:
    return next((name for name, pattern in CATEGORIES if pattern.search(kernel)), "other")


def profile_variant(model_name: str, variant: str, mode: str, steps: int, out: Path) -> dict[str, Any]:
    """Profile ``steps`` training steps of one variant; write its trace and return its summary."""
    device = torch.device("cuda")
    workload = WORKLOADS[model_name]
    model = SYSTEMS[variant](build_model(workload, quick=False).to(device), workload).train()
    batch = make_batch(workload, device, quick=False)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, fused=True)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    forward = model if mode == "eager" else torch.compile(model, mode=mode)

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = loss_of(forward, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(5):
        step()
    torch.cuda.synchronize()
    activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=activities) as prof:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(steps):
            step()
        end.record()
        torch.cuda.synchronize()
    trace = out / f"{model_name}_{variant}_{mode}.json"
    prof.export_chrome_trace(str(trace))
    with trace.open("rb") as raw, gzip.open(f"{trace}.gz", "wb") as packed:
        shutil.copyfileobj(raw, packed)
    trace.unlink()

    kernels: Counter[str] = Counter()
    calls: Counter[str] = Counter()
    for event in prof.events():
        if event.device_type == torch.autograd.DeviceType.CUDA:
            kernels[event.name] += event.device_time
            calls[event.name] += 1
    by_category: Counter[str] = Counter()
    for name, us in kernels.items():
        by_category[category(name)] += us
    counters = torch._dynamo.utils.counters
    return {
        "variant": variant,
        "mode": mode,
        "ms_per_step": start.elapsed_time(end) / steps,
        "gpu_busy_ms_per_step": sum(kernels.values()) / 1e3 / steps,
        "kernels_per_step": sum(calls.values()) / steps,
        "graphs": sum(counters["stats"].get(k, 0) for k in ("unique_graphs",)),
        "graph_breaks": sum(counters["graph_break"].values()),
        "break_reasons": sorted(counters["graph_break"])[:5],
        "by_category_ms": {k: v / 1e3 / steps for k, v in by_category.most_common()},
        "top_kernels": [(name[:90], us / 1e3 / steps, calls[name] // steps) for name, us in kernels.most_common(12)],
    }


def summary_markdown(model_name: str, rows: list[dict[str, Any]]) -> str:
    lines = [f"## {model_name}\n", "| variant | mode | ms/step | GPU-busy ms | kernels/step | graphs | breaks |"]
    lines.append("|---|---|---|---|---|---|---|")
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['mode']} | {r['ms_per_step']:.2f} | {r['gpu_busy_ms_per_step']:.2f} | "
            f"{r['kernels_per_step']:.0f} | {r['graphs']} | {r['graph_breaks']} |"
        )
    categories = sorted({c for r in rows for c in r["by_category_ms"]})
    lines += ["", "GPU ms per step by kernel category:", "", "| variant | " + " | ".join(categories) + " |"]
    lines.append("|---|" + "---|" * len(categories))
    for r in rows:
        cells = [f"{r['by_category_ms'].get(c, 0.0):.2f}" for c in categories]
        lines.append(f"| {r['variant']} ({r['mode']}) | " + " | ".join(cells) + " |")
    for r in rows:
        lines += ["", f"Top kernels, {r['variant']} ({r['mode']}): ms/step, calls/step", ""]
        lines += [f"- {ms:.3f} ms x{n}: `{name}`" for name, ms, n in r["top_kernels"]]
        if r["break_reasons"]:
            lines.append(f"- graph breaks: {r['break_reasons']}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gpt2-medium", choices=sorted(WORKLOADS))
    parser.add_argument("--variants", default="ours,peft,full_ft", help=f"comma list of {sorted(SYSTEMS)}")
    parser.add_argument("--mode", default="default", choices=["eager", "default", "reduce-overhead"])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("results/bench/profile"))
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("error: profile_step needs a CUDA GPU (the summary is of GPU kernels)")
    torch.backends.cuda.matmul.allow_tf32 = True
    args.out.mkdir(parents=True, exist_ok=True)
    rows = [profile_variant(args.model, v, args.mode, args.steps, args.out) for v in args.variants.split(",")]
    text = f"# Step profile ({device_name(torch.device('cuda'))}, torch {torch.__version__})\n\n"
    text += f"Command: `python -m benchmarks.profile_step --model {args.model} --variants {args.variants} "
    text += f"--mode {args.mode}`\n\n" + summary_markdown(args.model, rows)
    path = args.out / f"{args.model}_{args.mode}.md"
    path.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
