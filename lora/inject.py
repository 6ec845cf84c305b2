"""Injection: turn the target modules of an already-built model into LoRA layers that keep its weights.

A target is one of

* a paper name (``"Wq"``, ``"Wk"``, ``"Wv"``, ``"Wo"``, ``"Wgate"``, ``"Wup"``, ``"Wdown"`` or ``"FFN"``),
  mapped to the model's modules by :mod:`lora.architectures`;
* ``"re:<pattern>"``, a regular expression that must match a whole qualified module name;
* a module name, matched exactly or as a dotted suffix (``"query"`` matches ``"...self.query"``).

The replacement layers adopt the original ``weight`` and ``bias`` parameters (no copy), so the model's
state-dict keys for the pretrained weights are unchanged and the adapted model starts equal to the base.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from lora.architectures import FFN_MATRICES, PAPER_MATRICES, Architecture, detect_architecture
from lora.config import LoRAConfig
from lora.errors import LoRAConfigError, TargetNotFoundError, UnsupportedModuleError
from lora.layers import Conv1d, Conv2d, Conv3d, ConvLoRA, Embedding, Linear, LoRALayer, MergedLinear, resolve_config

__all__ = ["inject_lora", "inject_lora_layer", "resolve_targets"]

# The defaults of the loose keywords of inject_lora/inject_lora_layer, which a config= must leave untouched.
_INJECT_DEFAULTS = {"r": 8, "lora_alpha": 8, "lora_dropout": 0.0, "merge_weights": True, "use_rslora": False}


def _hf_conv1d_type() -> type[nn.Module] | None:
    """transformers' GPT-2 ``Conv1D`` (a linear layer storing its weight as (in, out)), if installed."""
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # pragma: no cover - transformers is optional for the layer library
        return None
    return Conv1D


def _type_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


@dataclass
class _Target:
    """One module to adapt: the whole module (``slices is None``) or some of its equal output slices."""

    module: nn.Module
    slices: set[int] | None = None
    n_slices: int = 1


@dataclass
class _Request:
    """What the targets asked of one module: all of it, some fused slices, or (an error) both."""

    module: nn.Module
    whole: bool = False
    slices: set[int] = field(default_factory=set)
    n_slices: int = 1


def _generic_names(model: nn.Module) -> list[str]:
    """Module names with layer indices collapsed (``layer.3.x`` -> ``layer.N.x``), for error messages."""
    seen: dict[str, str] = {}
    for name, module in model.named_modules():
        if name and not list(module.children()):
            seen.setdefault(re.sub(r"\.\d+(?=\.|$)", ".N", name), type(module).__name__)
    return [f"{name} ({kind})" for name, kind in seen.items()]


def _not_found(model: nn.Module, target: str, detail: str = "") -> TargetNotFoundError:
    listing = "\n  ".join(_generic_names(model))
    return TargetNotFoundError(
        f"target {target!r} matched no module of {type(model).__name__}{detail}. "
        f"Use a paper name ({', '.join(PAPER_MATRICES)}, FFN), 're:<regex>' or a module name or "
        f"dotted suffix from this model:\n  {listing}"
    )


def _paper_sites(arch: Architecture | None, model: nn.Module, target: str) -> list[str]:
    names = list(FFN_MATRICES) if target == "FFN" else [target]
    if arch is None:
        raise _not_found(
            model, target, " (its architecture is unknown, so paper names cannot be mapped; name the modules)"
        )
    known = [name for name in names if arch.site(name) is not None]
    if not known:
        raise _not_found(model, target, f" ({arch.name} models have {', '.join(arch.matrices)}, not {target})")
    return known


def resolve_targets(
    model: nn.Module, targets: str | Sequence[str], architecture: Architecture | None = None
) -> dict[str, _Target]:
    """Map every target to the qualified names of the modules (or fused slices) it designates.

    Raises:
        TargetNotFoundError: if a target matches nothing; the message lists the model's modules.
        LoRAConfigError: if no target is given, or a fused module is targeted both whole and by slice.
    """
    target_list = [targets] if isinstance(targets, str) else list(targets)
    if not target_list:
        raise LoRAConfigError("targets is empty: name at least one matrix, e.g. ['Wq', 'Wv']")
    arch = architecture or detect_architecture(model)
    modules = dict(model.named_modules())
    requests: dict[str, _Request] = {}
    for target in target_list:
        if target in PAPER_MATRICES or target == "FFN":
            sites = [arch.site(name) for name in _paper_sites(arch, model, target)]  # type: ignore[union-attr]
            hits = [(name, site) for site in sites for name in modules if site.matches(name)]  # type: ignore[union-attr]
            if not hits:
                raise _not_found(model, target, f" (looked for the {arch.name} module names)")  # type: ignore[union-attr]
            for name, site in hits:
                request = requests.setdefault(name, _Request(modules[name], n_slices=site.n_slices))
                if site.slice_index is None:
                    request.whole = True
                else:
                    request.slices.add(site.slice_index)
            continue
        if target.startswith("re:"):
            pattern = re.compile(target[3:])
            names = [name for name in modules if name and pattern.fullmatch(name)]
        else:
            names = [name for name in modules if name == target or name.endswith(f".{target}")]
        if not names:
            raise _not_found(model, target)
        for name in names:
            requests.setdefault(name, _Request(modules[name])).whole = True
    chosen: dict[str, _Target] = {}
    for name, request in requests.items():
        if request.whole and request.slices:
            raise LoRAConfigError(
                f"{name} is targeted both as a whole and by slice (paper names); choose one, e.g. "
                "['Wq', 'Wv'] for separate q/v slices or the module's name for all of it"
            )
        slices = None if request.whole else request.slices
        chosen[name] = _Target(request.module, slices, request.n_slices)
    return chosen


def _supported_types() -> str:
    return "torch.nn.Linear, torch.nn.Embedding, torch.nn.Conv1d/2d/3d, transformers Conv1D"


def _adapt_linear_like(module: nn.Module, target: _Target, config: LoRAConfig, fan_in_fan_out: bool) -> LoRALayer:
    weight = module.weight
    in_features, out_features = weight.shape if fan_in_fan_out else weight.shape[::-1]
    common = {
        "config": config,
        "fan_in_fan_out": fan_in_fan_out,
        "bias": module.bias is not None,
        "device": "meta",
        "dtype": weight.dtype,
    }
    if target.slices is None:
        return Linear(in_features, out_features, **common)
    flags = [index in target.slices for index in range(target.n_slices)]
    return MergedLinear(in_features, out_features, enable_lora=flags, **common)


def _make_layer(name: str, target: _Target, config: LoRAConfig) -> LoRALayer:
    """Build the LoRA layer for one target module (on the meta device; weights are adopted after)."""
    module = target.module
    if isinstance(module, LoRALayer):
        raise LoRAConfigError(f"{name} is already a LoRA layer ({type(module).__name__}); inject once")
    for base in (nn.Linear, nn.Embedding, nn.Conv1d, nn.Conv2d, nn.Conv3d):
        if isinstance(module, base) and type(module).forward is not base.forward:
            raise UnsupportedModuleError(
                f"target module {name!r} is a {_type_name(type(module))}, a subclass of torch.nn."
                f"{base.__name__} with its own forward (e.g. a scaled embedding or a quantized linear "
                "layer), which a LoRA layer would silently drop. Narrow the target to modules that compute "
                f"the plain {base.__name__} function."
            )
    hf_conv1d = _hf_conv1d_type()
    if target.slices is not None and not (isinstance(module, nn.Linear) or type(module) is hf_conv1d):
        raise UnsupportedModuleError(f"{name} ({type(module).__name__}) cannot be adapted by output slice")
    if hf_conv1d is not None and isinstance(module, hf_conv1d):
        return _adapt_linear_like(module, target, config, fan_in_fan_out=True)
    if isinstance(module, nn.Linear):
        return _adapt_linear_like(module, target, config, fan_in_fan_out=False)
    if isinstance(module, nn.Embedding):
        return Embedding(
            module.num_embeddings,
            module.embedding_dim,
            config=config,
            padding_idx=module.padding_idx,
            max_norm=module.max_norm,
            norm_type=module.norm_type,
            scale_grad_by_freq=module.scale_grad_by_freq,
            sparse=module.sparse,
            device="meta",
            dtype=module.weight.dtype,
        )
    if isinstance(module, nn.Conv1d | nn.Conv2d | nn.Conv3d):
        kinds = ((nn.Conv1d, Conv1d), (nn.Conv2d, Conv2d), (nn.Conv3d, Conv3d))
        cls = next(lora_cls for conv_cls, lora_cls in kinds if isinstance(module, conv_cls))
        return cls(
            module.in_channels,
            module.out_channels,
            module.kernel_size,
            config=config,
            stride=module.stride,
            padding=module.padding,
            dilation=module.dilation,
            groups=module.groups,
            bias=module.bias is not None,
            padding_mode=module.padding_mode,
            device="meta",
            dtype=module.weight.dtype,
        )
    raise UnsupportedModuleError(
        f"target module {name!r} is a {_type_name(type(module))}, which has no LoRA layer; "
        f"LoRA adapts {_supported_types()}. Narrow the target to such modules."
    )


def _adopt(layer: LoRALayer, module: nn.Module, lora_dtype: torch.dtype | None) -> None:
    """Give ``layer`` the pretrained parameters of ``module`` and fresh LoRA parameters beside them."""
    owner = layer.conv if isinstance(layer, ConvLoRA) else layer
    owner.weight = module.weight
    if not isinstance(layer, Embedding):
        owner.bias = module.bias
    weight = module.weight
    if layer.r > 0 and (not isinstance(layer, MergedLinear) or any(layer.enable_lora)):
        layer._create_lora_parameters(weight.device, lora_dtype or weight.dtype)
        layer.reset_lora_parameters()
        weight.requires_grad = False
    layer.base_layer_type = _type_name(type(module))
    layer.train(module.training)


def inject_lora(
    model: nn.Module,
    targets: str | Sequence[str],
    r: int = 8,
    lora_alpha: float = 8,
    lora_dropout: float = 0.0,
    *,
    merge_weights: bool = True,
    use_rslora: bool = False,
    config: LoRAConfig | None = None,
    lora_dtype: torch.dtype | None = None,
    architecture: Architecture | None = None,
) -> list[str]:
    """Replace the modules that ``targets`` designate with LoRA layers, in place.

    Args:
        model: any ``nn.Module``; HF models are recognised by ``config.model_type``.
        targets: paper names, ``"re:<regex>"`` patterns or module names/suffixes (see module doc).
        r, lora_alpha, lora_dropout, merge_weights, use_rslora: as for :class:`lora.Linear`.
        config: all hyperparameters in one :class:`lora.LoRAConfig` (needed for ``init`` and ``use_dora``),
            instead of the keywords above.
        lora_dtype: dtype of the new A/B matrices (default: that of the pretrained weight).
        architecture: override the detected :class:`~lora.architectures.Architecture`.

    Returns:
        The qualified names of the replaced modules.

    Raises:
        TargetNotFoundError: a target matched nothing (the message lists the model's modules).
        UnsupportedModuleError: a target matched a module type LoRA cannot adapt (named in the message).
        LoRAConfigError: a hyperparameter is out of range, both ``config`` and other keywords are given,
            or a variant is not implemented for a matched module (e.g. DoRA on an embedding).
    """
    given = {"r": r, "lora_alpha": lora_alpha, "lora_dropout": lora_dropout, "merge_weights": merge_weights}
    config = resolve_config(config, given | {"use_rslora": use_rslora}, _INJECT_DEFAULTS)
    chosen = resolve_targets(model, targets, architecture)
    built = {name: _make_layer(name, target, config) for name, target in chosen.items()}
    for name, layer in built.items():
        _adopt(layer, chosen[name].module, lora_dtype)
        _replace(model, name, layer)
    return sorted(built)


def _replace(model: nn.Module, name: str, layer: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name), child, layer)


def inject_lora_layer(
    model: nn.Module,
    name: str,
    r: int = 8,
    lora_alpha: float = 8,
    lora_dropout: float = 0.0,
    *,
    enable_lora: Sequence[bool] | None = None,
    merge_weights: bool = True,
    use_rslora: bool = False,
    config: LoRAConfig | None = None,
    lora_dtype: torch.dtype | None = None,
) -> LoRALayer:
    """Replace exactly the module called ``name`` by a LoRA layer, to rebuild a recorded adapter layer.

    Unlike :func:`inject_lora`, nothing is matched by pattern or paper name, so a saved layer is rebuilt
    at its own name only, and fused slices are given explicitly.

    Args:
        model: the model, modified in place.
        name: the qualified name of the module to adapt (as in ``model.named_modules()``).
        r, lora_alpha, lora_dropout, merge_weights, use_rslora: as for :class:`lora.Linear`.
        config: all hyperparameters in one :class:`lora.LoRAConfig`, instead of the keywords above.
        enable_lora: one flag per equal output slice to build a :class:`lora.MergedLinear`
            (linear layers and GPT-2 ``Conv1D`` only); ``None`` adapts the whole module.
        lora_dtype: dtype of the new A/B matrices (default: that of the pretrained weight).

    Returns:
        The new LoRA layer, already in place in ``model``.

    Raises:
        TargetNotFoundError: ``model`` has no module called ``name``.
        UnsupportedModuleError: the module's type has no LoRA layer (or no slices, with ``enable_lora``).
        LoRAConfigError: ``name`` is empty or already a LoRA layer, or a hyperparameter is out of range.
    """
    if not name:
        raise LoRAConfigError("name is empty: the model itself cannot be replaced; name one of its modules")
    try:
        module = model.get_submodule(name)
    except AttributeError:
        raise _not_found(model, name) from None
    if enable_lora is None:
        target = _Target(module)
    else:
        flags = [bool(flag) for flag in enable_lora]
        target = _Target(module, {i for i, flag in enumerate(flags) if flag}, len(flags))
    given = {"r": r, "lora_alpha": lora_alpha, "lora_dropout": lora_dropout, "merge_weights": merge_weights}
    config = resolve_config(config, given | {"use_rslora": use_rslora}, _INJECT_DEFAULTS)
    layer = _make_layer(name, target, config)
    _adopt(layer, module, lora_dtype)
    _replace(model, name, layer)
    return layer
