"""Which parameters train, and which go into a LoRA checkpoint (loralib's two helpers, made to agree)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.nn as nn

from lora._checks import check_bias_mode
from lora.errors import LoRAConfigError
from lora.layers import ConvLoRA, LoRALayer

__all__ = [
    "dropout_probability",
    "in_modules",
    "lora_state_dict",
    "mark_only_lora_as_trainable",
    "named_lora_layers",
    "resolve_modules",
]


def named_lora_layers(model: nn.Module) -> Iterator[tuple[str, LoRALayer]]:
    """Yield ``(qualified name, layer)`` for every LoRA layer in ``model``."""
    for name, module in model.named_modules():
        if isinstance(module, LoRALayer):
            yield name, module


def dropout_probability(layer: LoRALayer) -> float:
    """The ``lora_dropout`` probability of ``layer`` (0.0 when its dropout is ``nn.Identity``)."""
    return float(layer.lora_dropout.p) if isinstance(layer.lora_dropout, nn.Dropout) else 0.0


def resolve_modules(model: nn.Module, names: Sequence[str]) -> list[str]:
    """The qualified names of the modules that ``names`` designate, outermost only, sorted.

    Each entry matches a module named exactly so or ending in ``.<entry>`` (``"classifier"``,
    ``"layer.0.output"``), the same parameters ``trainable_modules`` selects, so one list can serve
    to train a task head and to save it.

    Raises:
        LoRAConfigError: an entry is empty or matches no module (the message lists top-level modules).
    """
    module_names = [name for name, _ in model.named_modules() if name]
    found: set[str] = set()
    for entry in names:
        hits = [name for name in module_names if entry and (name == entry or name.endswith(f".{entry}"))]
        if not hits:
            top = sorted({name.split(".", 1)[0] for name in module_names})
            raise LoRAConfigError(
                f"module {entry!r} matched no module of {type(model).__name__}; give a qualified module name "
                f"or a dotted suffix of one (top-level modules: {', '.join(top)})"
            )
        found.update(hits)
    return sorted(name for name in found if not any(name.startswith(f"{other}.") for other in found))


def _bias_name(layer_name: str, layer: LoRALayer) -> str | None:
    """State-dict key of the bias of a LoRA layer (conv layers keep theirs under ``conv.bias``)."""
    owner = layer.conv if isinstance(layer, ConvLoRA) else layer
    if getattr(owner, "bias", None) is None:
        return None
    prefix = f"{layer_name}." if layer_name else ""
    return f"{prefix}conv.bias" if isinstance(layer, ConvLoRA) else f"{prefix}bias"


def in_modules(param_name: str, modules: Sequence[str]) -> bool:
    """Whether a parameter belongs to one of ``modules`` (qualified module names or dotted suffixes of them).

    The one test of "this parameter is part of that module" for training heads, counting and saving.
    """
    dotted = f".{param_name}"
    return any(param_name.startswith(f"{m}.") or f".{m}." in dotted for m in modules if m)


def mark_only_lora_as_trainable(model: nn.Module, bias: str = "none", trainable_modules: Sequence[str] = ()) -> None:
    """Freeze everything but the LoRA matrices, the chosen biases and any ``trainable_modules``.

    Args:
        model: the model, modified in place.
        bias: ``"none"``, ``"all"`` (every parameter named ``*bias``) or ``"lora_only"`` (biases
            of LoRA layers, conv layers included).
        trainable_modules: module names (or dotted name components, e.g. ``"classifier"``) whose
            parameters all train, such as a task head.

    Raises:
        LoRAConfigError: if ``bias`` is not one of the three modes.
    """
    check_bias_mode(bias)
    lora_biases = {key for name, layer in named_lora_layers(model) if (key := _bias_name(name, layer)) is not None}
    for name, param in model.named_parameters():
        is_lora = "lora_" in name
        is_bias = (bias == "all" and "bias" in name) or (bias == "lora_only" and name in lora_biases)
        param.requires_grad = is_lora or is_bias or in_modules(name, trainable_modules)


def lora_state_dict(model: nn.Module, bias: str = "none") -> dict[str, torch.Tensor]:
    """The LoRA matrices (and chosen biases) of ``model``'s state dict, for small checkpoints.

    Keys are the model's own state-dict keys, so ``model.load_state_dict(sd, strict=False)`` restores
    them. Weights are always unmerged, whatever mode the model is in.

    Raises:
        LoRAConfigError: if ``bias`` is not ``"none"``, ``"all"`` or ``"lora_only"``.
    """
    check_bias_mode(bias)
    state = model.state_dict()
    keep = {key for key in state if "lora_" in key}
    if bias == "all":
        keep |= {key for key in state if "bias" in key}
    elif bias == "lora_only":
        # Every LoRA layer's bias, as mark_only_lora_as_trainable trains them (also where r=0).
        for name, layer in named_lora_layers(model):
            key = _bias_name(name, layer)
            if key is not None:
                keep.add(key)
    return {key: value for key, value in state.items() if key in keep}
