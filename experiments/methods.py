"""The three fine-tuning methods the paper compares, as one function that decides what trains.

* ``lora``: LoRA on the target matrices (paper names Wq/Wk/Wv/Wo/FFN), everything else frozen;
* ``full_ft``: every parameter trains;
* ``bitfit``: every bias trains (LayerNorm biases included), weights stay frozen.

In every method the task head trains too; the paper leaves it out of the trainable count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch.nn as nn

import lora

__all__ = ["METHODS", "AppliedMethod", "apply_method"]

METHODS = ("lora", "full_ft", "bitfit")


@dataclass(frozen=True)
class AppliedMethod:
    """What :func:`apply_method` did, for the result file."""

    name: str
    adapted_modules: list[str] = field(default_factory=list)
    counts: lora.ParameterCount | None = None


def _in_head(name: str, head_modules: Sequence[str]) -> bool:
    dotted = f".{name}"
    return any(name.startswith(f"{m}.") or f".{m}." in dotted for m in head_modules)


def apply_method(model: nn.Module, method: Mapping[str, Any], head_modules: Sequence[str]) -> AppliedMethod:
    """Inject LoRA (for ``lora``) and set ``requires_grad`` for ``method['name']``, in place.

    Raises:
        ValueError: an unknown method, or LoRA settings out of range (``r`` must be >= 1 here).
    """
    name = method["name"]
    adapted: list[str] = []
    if name == "lora":
        r = method["r"]
        if isinstance(r, bool) or not isinstance(r, int) or r < 1:
            raise ValueError(f"method.r must be a positive integer for method=lora, got {r!r} (e.g. method.r=8)")
        adapted = lora.inject_lora(
            model,
            list(method["targets"]),
            r=r,
            lora_alpha=method["lora_alpha"],
            lora_dropout=method.get("lora_dropout", 0.0),
            use_rslora=method.get("use_rslora", False),
        )
        lora.mark_only_lora_as_trainable(model, bias=method.get("bias", "none"), trainable_modules=head_modules)
    elif name == "full_ft":
        for param in model.parameters():
            param.requires_grad = True
    elif name == "bitfit":
        for param_name, param in model.named_parameters():
            param.requires_grad = param_name.endswith("bias") or _in_head(param_name, head_modules)
    else:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)} (e.g. method=lora)")
    return AppliedMethod(name, adapted, lora.count_parameters(model, head_modules))
