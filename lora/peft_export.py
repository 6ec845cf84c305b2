"""Export to Hugging Face PEFT's LoRA format, so ``peft.PeftModel.from_pretrained(base, directory)`` works.

The directory gets ``adapter_config.json`` (a PEFT ``LoraConfig``) and ``adapter_model.safetensors``, with
PEFT's key names under ``base_model.model.``:

* :class:`lora.Linear` (``nn.Linear`` or GPT-2's ``Conv1D``): ``<name>.lora_A.weight`` (r x in) and
  ``<name>.lora_B.weight`` (out x r), the same matrices; ``fan_in_fan_out`` only changes ``W0``'s layout.
* :class:`lora.Embedding`: ``<name>.lora_embedding_A`` (r x num_embeddings) and ``<name>.lora_embedding_B``
  (dim x r), the same matrices.
* :class:`lora.MergedLinear` (GPT-2's q/v slices of ``c_attn``): PEFT adapts whole modules only, so the
  slices become one exactly equivalent whole-module LoRA; see :func:`whole_layer_factors`.
* biases of the bias mode: a LoRA layer's as ``<name>.base_layer.bias``, the others under their own names;
  ``modules_to_save``: the module's whole state under ``<module>.<key>``.

Ranks and alphas that differ from the most common ones go to ``rank_pattern``/``alpha_pattern``, keyed
``^<escaped name>`` so that each pattern matches its own module only. PEFT computes each layer's scaling
itself (``lora_alpha / r``, or ``/ sqrt(r)`` with ``use_rslora``, one flag for all layers), so every
exported alpha is chosen to give exactly our scaling: bit for bit when the arithmetic allows (integer
alphas without rsLoRA), else to within one rounding of a float.

Variants: DoRA (``use_dora``) exports its ``lora_magnitude_vector`` under PEFT's key and sets PEFT's
``use_dora`` (one flag for all layers, so layers must agree); a PiSSA-initialised layer exports the
equivalent rank-2r LoRA on the pretrained ``W0`` (:meth:`lora.Linear.as_plain_lora`, PEFT's own
conversion on save), so ``PeftModel.from_pretrained`` takes the original base, not the residual one.

Conv layers have no equivalent and are refused: loralib reshapes ``B A`` into the kernel, PEFT's conv LoRA
is a conv into ``r`` channels followed by a 1x1 conv, and neither form can express the other's updates.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from lora._checks import check_bias_mode
from lora.config import alpha_for_scaling
from lora.errors import LoRAConfigError, UnsupportedModuleError
from lora.files import json_bytes, safetensors_payload, write_atomic
from lora.layers import ConvLoRA, Embedding, Linear, LoRALayer, MergedLinear
from lora.trainable import dropout_probability, lora_state_dict, named_lora_layers, resolve_modules

__all__ = ["PEFT_TASK_TYPES", "export_peft", "peft_lora_alpha", "whole_layer_factors"]

PEFT_CONFIG_FILE = "adapter_config.json"
PEFT_WEIGHTS_FILE = "adapter_model.safetensors"
PEFT_TASK_TYPES = ("SEQ_CLS", "SEQ_2_SEQ_LM", "CAUSAL_LM", "TOKEN_CLS", "QUESTION_ANS", "FEATURE_EXTRACTION")
_PREFIX = "base_model.model."
# Heads that PEFT's task models add to modules_to_save by themselves (peft 0.21, PeftModelFor*).
_TASK_HEADS = {
    "SEQ_CLS": ("classifier", "score"),
    "TOKEN_CLS": ("classifier", "score"),
    "QUESTION_ANS": ("qa_outputs",),
}


def whole_layer_factors(layer: MergedLinear) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A, B)`` of a whole-module LoRA of rank ``r * n_enabled`` equal to ``layer``'s per-slice LoRA.

    ``A`` stacks the enabled slices' ``A_j`` (as ``layer.lora_A`` already does); ``B`` is
    block-diagonal: ``B_j`` sits in the rows of output slice ``j`` and the columns of ``A_j``, zeros
    elsewhere. Then ``B A`` has ``B_j A_j`` in each enabled slice's rows and zeros in the others,
    which is ``layer``'s update; with the alpha from :func:`peft_lora_alpha` the scaling is the same.
    The same dropout mask feeds every slice in both forms, so training steps agree too (though
    further PEFT training may fill the zero blocks).
    """
    with torch.no_grad():
        return layer.lora_A.detach().clone(), layer.full_b().detach().clone()


def peft_lora_alpha(layer: LoRALayer, rank: int, use_rslora: bool) -> float:
    """The ``lora_alpha`` for which PEFT's scaling at ``rank`` (and ``use_rslora``) is ``layer.scaling``.

    PEFT computes ``alpha / rank`` (or ``alpha / sqrt(rank)``) itself; the natural candidate
    (``lora_alpha * rank / r``, exact for integer alphas) is tried first (see
    :func:`lora.config.alpha_for_scaling`).
    """
    hint = None
    if layer.use_rslora == use_rslora:
        ratio = rank / layer.r
        hint = layer.lora_alpha * (math.sqrt(ratio) if use_rslora else ratio)
    return alpha_for_scaling(layer.scaling, rank, use_rslora, hint)


@dataclass(frozen=True)
class _PeftLayer:
    """One LoRA layer in PEFT's terms."""

    name: str
    layer: LoRALayer
    tensors: dict[str, torch.Tensor]
    rank: int


def _to_peft(name: str, layer: LoRALayer) -> _PeftLayer:
    if not name:
        raise LoRAConfigError("a bare LoRA layer has no module name for PEFT; export the model that holds it")
    key = f"{_PREFIX}{name}."
    if isinstance(layer, ConvLoRA):
        raise UnsupportedModuleError(
            f"{name} is a lora.{type(layer).__name__}, whose update (loralib's B {tuple(layer.lora_B.shape)} "
            f"@ A {tuple(layer.lora_A.shape)} reshaped into the kernel) has no PEFT equivalent: PEFT's conv "
            "LoRA is a conv into r channels then a 1x1 conv. Export models without LoRA on convolutions, or "
            "use lora.save_adapter, or fold the update into the weights with lora.merge_and_unload"
        )
    if isinstance(layer, Embedding):
        tensors = {f"{key}lora_embedding_A": layer.lora_A, f"{key}lora_embedding_B": layer.lora_B}
        return _PeftLayer(name, layer, tensors, layer.r)
    if isinstance(layer, MergedLinear):
        a, b = whole_layer_factors(layer)
        return _PeftLayer(name, layer, {f"{key}lora_A.weight": a, f"{key}lora_B.weight": b}, a.shape[0])
    if isinstance(layer, Linear):
        config, a, b = layer.as_plain_lora()  # rank 2r on the pretrained W0 after a PiSSA init
        tensors = {f"{key}lora_A.weight": a, f"{key}lora_B.weight": b}
        if config.use_dora:
            tensors[f"{key}lora_magnitude_vector"] = layer.lora_magnitude_vector
        return _PeftLayer(name, layer, tensors, config.r)
    raise UnsupportedModuleError(f"{name} is a {type(layer).__name__}, which has no PEFT LoRA counterpart")


def _pattern(name: str) -> str:
    # PEFT matches pattern keys with re.match(rf"(.*\.)?({key})$", module); "^" forbids any prefix.
    return f"^{re.escape(name)}"


def _base_module_names(model: nn.Module, lora_names: Sequence[str]) -> list[str]:
    """Module names of the model without LoRA, as PEFT sees the base (no LoRA-internal children)."""
    inside = tuple(f"{name}." for name in lora_names)
    return [name for name, _ in model.named_modules() if name and not name.startswith(inside)]


def _target_modules(targets: list[str], base_names: Sequence[str]) -> list[str] | str:
    """PEFT's ``target_modules``: the names, or an exact regex if a name is also another module's suffix."""
    chosen = set(targets)
    ambiguous = any(
        name not in chosen and any(name.endswith(f".{target}") for target in targets) for name in base_names
    )
    return f"(?:{'|'.join(re.escape(target) for target in targets)})" if ambiguous else targets


def _check_saved_modules(
    saved: list[str], task_type: str | None, targets: list[str], base_names: Sequence[str]
) -> None:
    """Refuse module lists PEFT would read differently from what we export."""
    for entry in saved:
        # PEFT wraps every module whose name ends with the entry (a plain string suffix).
        others = [name for name in base_names if name.endswith(entry) and name not in saved]
        if others:
            raise LoRAConfigError(
                f"PEFT selects modules_to_save by name suffix, so {entry!r} would also save {others}; "
                "rename or list the modules so that each name selects one module"
            )
    wrapped = [*saved, *_TASK_HEADS.get(task_type or "", ())]
    for target in targets:
        prefixes = [target.rsplit(".", depth)[0] for depth in range(target.count(".") + 1)]
        for entry in wrapped:
            if re.match(rf"(^|.*\.){entry}($|\..*)", target) or any(p.endswith(entry) for p in prefixes):
                raise LoRAConfigError(
                    f"the LoRA layer {target} lies in a module PEFT saves whole ({entry!r}, from "
                    f"modules_to_save or task_type={task_type!r}), and PEFT does not adapt modules inside "
                    "those; take that module out of modules_to_save, or fold the layer with "
                    "lora.merge_and_unload"
                )


def _listing(names: Sequence[str], limit: int = 4) -> str:
    return ", ".join(names[:limit]) + (f" (and {len(names) - limit} more)" if len(names) > limit else "")


def _most_common(values: Sequence[float]) -> float:
    """The most frequent value (the first seen among equals), so patterns cover the fewest layers."""
    return Counter(values).most_common(1)[0][0]


def export_peft(
    model: nn.Module,
    directory: str | Path,
    *,
    base_model_name_or_path: str | None = None,
    task_type: str | None = None,
    modules_to_save: Sequence[str] = (),
    bias: str = "none",
) -> Path:
    """Write ``model``'s LoRA adapter in PEFT's format, to be served or shared with the PEFT ecosystem.

    ``peft.PeftModel.from_pretrained(base, directory)`` on the base model then computes what ``model``
    computes (see the module docstring for the mapping and the GPT-2 slice conversion).

    Args:
        model: a model with LoRA layers (``lora.Linear``, ``MergedLinear``, ``Embedding``).
        directory: created if needed; ``adapter_config.json`` and ``adapter_model.safetensors`` in it
            are replaced atomically.
        base_model_name_or_path: recorded for ``AutoPeftModel``; default: ``model.config._name_or_path``.
        task_type: a PEFT task type (``"SEQ_CLS"``, ``"CAUSAL_LM"``, ...), or ``None`` for a plain
            ``PeftModel``.
        modules_to_save: modules exported whole, e.g. ``["classifier"]`` for a trained task head.
        bias: loralib's bias mode; PEFT has the same three modes.

    Returns:
        The export directory.

    Raises:
        UnsupportedModuleError: the model has LoRA on a convolution (no PEFT equivalent).
        LoRAConfigError: no LoRA layer has parameters; layers differ in ``lora_dropout`` or ``use_dora``
            (PEFT has one of each);
            ``task_type`` or ``bias`` is unknown; or ``modules_to_save`` cannot be expressed for PEFT.
    """
    check_bias_mode(bias)
    if task_type is not None and task_type not in PEFT_TASK_TYPES:
        raise LoRAConfigError(f"task_type must be None or one of {', '.join(PEFT_TASK_TYPES)}; got {task_type!r}")
    all_layers = list(named_lora_layers(model))
    layers = [_to_peft(name, layer) for name, layer in all_layers if layer.has_lora]
    if not layers:
        raise LoRAConfigError(
            f"{type(model).__name__} has no LoRA layer with parameters to export; inject LoRA first "
            "(lora.inject_lora) or load an adapter (lora.load_adapter)"
        )
    # Embedding LoRA applies no dropout, here as in PEFT, so only the other layers must agree.
    dropouts = {x.name: dropout_probability(x.layer) for x in layers if not isinstance(x.layer, Embedding)}
    if len(set(dropouts.values())) > 1:
        listing = ", ".join(f"{name}={p}" for name, p in dropouts.items())
        raise LoRAConfigError(
            f"PEFT has one lora_dropout for all layers, but these layers differ: {listing}; give them the "
            "same dropout before exporting"
        )
    dora = {x.name: x.layer.config.use_dora for x in layers}
    if len(set(dora.values())) > 1:
        plain = sorted(name for name, flag in dora.items() if not flag)
        raise LoRAConfigError(
            f"PEFT has one use_dora for all layers, but only some layers use DoRA; {_listing(plain)} do not. "
            "Export a model whose LoRA layers all use DoRA or none does (PEFT would give the others a magnitude)"
        )
    targets = sorted(layer.name for layer in layers)
    base_names = _base_module_names(model, [name for name, _ in all_layers])
    saved = resolve_modules(model, modules_to_save)
    _check_saved_modules(saved, task_type, targets, base_names)

    use_rslora = all(layer.layer.use_rslora for layer in layers)
    alphas = {layer.name: peft_lora_alpha(layer.layer, layer.rank, use_rslora) for layer in layers}
    ranks = {layer.name: layer.rank for layer in layers}
    r, lora_alpha = int(_most_common(list(ranks.values()))), _most_common(list(alphas.values()))

    tensors: dict[str, torch.Tensor] = {}
    for layer in layers:
        tensors.update(layer.tensors)
    lora_matrices = {f"{name}.{p}" for name, layer in all_layers for p in layer._parameters if p.startswith("lora_")}
    exported_biases = {f"{name}.bias": f"{name}.base_layer.bias" for name in targets}
    for key, value in lora_state_dict(model, bias).items():
        if key not in lora_matrices:
            tensors[_PREFIX + exported_biases.get(key, key)] = value
    for module in saved:
        state = model.get_submodule(module).state_dict()
        tensors.update({f"{_PREFIX}{module}.{key}": value for key, value in state.items()})

    identity = getattr(getattr(model, "config", None), "_name_or_path", None) or None
    config = {
        "peft_type": "LORA",
        "task_type": task_type,
        "base_model_name_or_path": base_model_name_or_path or identity,
        "inference_mode": True,
        "r": r,
        "lora_alpha": lora_alpha,
        "lora_dropout": next(iter(dropouts.values()), 0.0),
        "use_rslora": use_rslora,
        "use_dora": all(dora.values()),
        "target_modules": _target_modules(targets, base_names),
        "rank_pattern": {_pattern(name): rank for name, rank in ranks.items() if rank != r},
        "alpha_pattern": {_pattern(name): alpha for name, alpha in alphas.items() if alpha != lora_alpha},
        "fan_in_fan_out": any(getattr(layer.layer, "fan_in_fan_out", False) for layer in layers),
        "bias": bias,
        "modules_to_save": saved or None,
        "init_lora_weights": True,
    }
    payload, _ = safetensors_payload(dict(sorted(tensors.items())), {"format": "pt"})
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_atomic(directory / PEFT_WEIGHTS_FILE, payload)
    write_atomic(directory / PEFT_CONFIG_FILE, json_bytes(config))
    return directory
