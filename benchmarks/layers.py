"""Layer benchmark: forward + backward of ``lora.Linear`` vs a frozen ``nn.Linear`` vs PEFT's and loralib's.

    python -m benchmarks.layers                # GPU: bf16, 4096 tokens; CPU: fp32
    python -m benchmarks.layers --quick        # small CPU shapes for local use

The input requires grad (a layer inside a network passes gradients on), the frozen weight does not.
Each step is one forward and one backward with gradients set to None before it, as after
``zero_grad``. On a GPU each implementation is also timed replayed from a CUDA graph, which removes
Python and launch overhead and leaves the kernels' own time.
"""

from __future__ import annotations

import argparse
import copy
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

import lora
from benchmarks.common import device_name, markdown_table, time_call, write_jsonl

SHAPES = ((768, 768), (1024, 3072))
RANKS = (4, 8, 64)


def _peft_layer(base: nn.Linear, r: int) -> nn.Module:
    from peft import LoraConfig, get_peft_model

    wrapper = get_peft_model(
        nn.Sequential(OrderedDict(fc=base)), LoraConfig(r=r, lora_alpha=2 * r, target_modules=["fc"], lora_dropout=0.0)
    )
    return wrapper.base_model.model.fc


def _loralib_layer(base: nn.Linear, r: int) -> nn.Module:
    import loralib

    layer = loralib.Linear(base.in_features, base.out_features, r=r, lora_alpha=2 * r).to(base.weight.device)
    layer.load_state_dict(base.state_dict(), strict=False)
    return layer


def implementations(d_in: int, d_out: int, r: int, device: torch.device, dtype: torch.dtype) -> dict[str, nn.Module]:
    """The peers for one shape and rank, all holding the same frozen weight, in train mode."""
    torch.manual_seed(0)
    base = nn.Linear(d_in, d_out).to(device)
    ours = lora.Linear(d_in, d_out, r=r, lora_alpha=2 * r).to(device)
    ours.load_state_dict(base.state_dict(), strict=False)
    frozen = copy.deepcopy(base).requires_grad_(False)
    layers = {
        "frozen nn.Linear": frozen,
        "lora (ours)": ours,
        "peft": _peft_layer(copy.deepcopy(base), r),
        "loralib": _loralib_layer(base, r),
    }
    for layer in layers.values():
        layer.to(dtype).train()
    return layers


def _step_fn(layer: nn.Module, x: torch.Tensor, grad: torch.Tensor):
    params = [p for p in layer.parameters() if p.requires_grad]

    def step() -> None:
        x.grad = None
        for p in params:
            p.grad = None
        layer(x).backward(grad)

    return step


def _graphed_step(layer: nn.Module, x: torch.Tensor, grad: torch.Tensor):
    """The step captured once in a CUDA graph and replayed (kernel time without launch overhead)."""
    step = _step_fn(layer, x, grad)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    params = [p for p in layer.parameters() if p.requires_grad]
    x.grad = None
    for p in params:
        p.grad = None
    with torch.cuda.graph(graph):
        layer(x).backward(grad)
    return graph.replay


def run(tokens: int, shapes, ranks, device: torch.device, dtype: torch.dtype, iters: int) -> list[dict[str, Any]]:
    rows = []
    for d_in, d_out in shapes:
        for r in ranks:
            layers = implementations(d_in, d_out, r, device, dtype)
            x = torch.randn(tokens, d_in, device=device, dtype=dtype, requires_grad=True)
            grad = torch.randn(tokens, d_out, device=device, dtype=dtype)
            times = {name: time_call(_step_fn(layer, x, grad), device, iters) for name, layer in layers.items()}
            graphed = {}
            if device.type == "cuda":
                graphed = {
                    name: time_call(_graphed_step(layer, x, grad), device, iters) for name, layer in layers.items()
                }
            base, base_graph = times["frozen nn.Linear"], graphed.get("frozen nn.Linear")
            for name in layers:
                row = {
                    "benchmark": "layer_fwd_bwd",
                    "shape": f"{d_in}x{d_out}",
                    "tokens": tokens,
                    "r": r,
                    "impl": name,
                    "dtype": str(dtype).removeprefix("torch."),
                    "device": device_name(device),
                    "ms": times[name],
                    "vs_frozen": times[name] / base,
                    "vs_peft": times[name] / times["peft"],
                }
                if graphed:
                    row.update(
                        {
                            "graph_ms": graphed[name],
                            "graph_vs_frozen": graphed[name] / base_graph,
                            "graph_vs_peft": graphed[name] / graphed["peft"],
                        }
                    )
                rows.append(row)
                print(
                    " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True
                )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small CPU shapes (1024 tokens, 20 iterations)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--out", type=Path, default=Path("results/bench"), help="folder for layers.{jsonl,md}")
    args = parser.parse_args(argv)
    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    tokens, iters = (1024, 10) if args.quick else (4096, 100 if device.type == "cuda" else 5)
    rows = run(tokens, SHAPES, RANKS, device, dtype, iters)
    suffix = "gpu" if device.type == "cuda" else "cpu"
    write_jsonl(args.out / f"layers_{suffix}.jsonl", rows)
    columns = ["shape", "r", "impl", "ms", "vs_frozen", "vs_peft"]
    if device.type == "cuda":
        columns += ["graph_ms", "graph_vs_frozen", "graph_vs_peft"]
    table = markdown_table(rows, columns)
    header = (
        f"# Layer benchmark: forward + backward, {tokens} tokens, {rows[0]['dtype']}, {rows[0]['device']}\n\n"
        f"Command: `python -m benchmarks.layers{' --quick' if args.quick else ''}`. Ratios are against "
        "peers measured in the same process.\n\n"
    )
    (args.out / f"layers_{suffix}.md").write_text(header + table + "\n", encoding="utf-8")
    print(table)


if __name__ == "__main__":
    main()
