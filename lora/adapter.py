"""Adapter files: the LoRA matrices of a model (and its trained head) on disk, loadable into a fresh base.

A directory holds two files, each replaced atomically:

* ``adapter.safetensors``: the LoRA matrices, the biases of the chosen loralib bias mode, and the whole
  state of every module in ``modules_to_save`` (e.g. a classification head), under the model's own
  state-dict keys, so ``model.load_state_dict(safetensors.torch.load_file(...), strict=False)`` also works;
* ``adapter_config.json``: the format name and version, every LoRA layer's settings and base weight shape
  (enough to inject it again), the bias mode, ``modules_to_save``, the base model's identity, the tensor
  list with shapes and dtypes, the SHA-256 of the tensor file, and free-form ``metadata``.

:func:`load_adapter` injects the recorded LoRA layers into a model that lacks them (so an adapter loads
into a freshly loaded pretrained model), checks everything it can before changing the model, and undoes
its injections if a later check fails.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors.torch import load as safetensors_load

from lora._checks import check_bias_mode
from lora._files import dtype_name, json_bytes, safetensors_payload, write_atomic
from lora.errors import AdapterMismatchError, LoRAConfigError
from lora.inject import inject_lora_layer
from lora.layers import LoRALayer, MergedLinear
from lora.trainable import dropout_probability, lora_state_dict, named_lora_layers, resolve_modules

__all__ = [
    "CONFIG_FILE",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "TENSORS_FILE",
    "load_adapter",
    "read_adapter",
    "save_adapter",
]

CONFIG_FILE = "adapter_config.json"
TENSORS_FILE = "adapter.safetensors"
FORMAT_NAME = "lora-harness-adapter"
FORMAT_VERSION = 1

# Layer settings that change what a layer computes: an existing layer must agree on all of them.
_FUNCTIONAL_SETTINGS = (
    "layer_type",
    "r",
    "lora_alpha",
    "use_rslora",
    "fan_in_fan_out",
    "enable_lora",
    "base_weight_shape",
)


def _listing(items: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" (and {len(items) - limit} more)" if len(items) > limit else "")


# -- saving ------------------------------------------------------------------------------------


def _base_model_identity(model: nn.Module) -> dict[str, str | None]:
    """Class name, ``config.model_type`` and ``config._name_or_path`` of a (Hugging Face) model."""
    config = getattr(model, "config", None)
    return {
        "class_name": type(model).__name__,
        "model_type": getattr(config, "model_type", None) or None,
        "name_or_path": getattr(config, "_name_or_path", None) or None,
    }


def _layer_record(layer: LoRALayer) -> dict[str, Any]:
    """Everything needed to rebuild ``layer`` around its base module, and to recognise that base."""
    return {
        "layer_type": type(layer).__name__,
        "r": layer.r,
        "lora_alpha": layer.lora_alpha,
        "lora_dropout": dropout_probability(layer),
        "use_rslora": layer.use_rslora,
        "merge_weights": layer.merge_weights,
        "fan_in_fan_out": getattr(layer, "fan_in_fan_out", None),
        "enable_lora": list(layer.enable_lora) if isinstance(layer, MergedLinear) else None,
        "base_layer_type": layer.base_layer_type,
        "base_weight_shape": list(layer.frozen_weight.shape),
    }


def _adapter_tensors(model: nn.Module, bias: str, modules: Sequence[str]) -> dict[str, torch.Tensor]:
    tensors = lora_state_dict(model, bias)
    if modules:
        prefixes = tuple(f"{name}." for name in modules)
        tensors.update({k: v for k, v in model.state_dict().items() if k.startswith(prefixes)})
    return dict(sorted(tensors.items()))


def save_adapter(
    model: nn.Module,
    directory: str | Path,
    *,
    bias: str = "none",
    modules_to_save: Sequence[str] = (),
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model``'s adapter (LoRA matrices, chosen biases, saved modules) to ``directory``.

    The files are small (the frozen base is not in them) and self-describing, so
    :func:`load_adapter` can rebuild the LoRA layers in a freshly loaded base model.

    Args:
        model: a model with LoRA layers (weights are saved unmerged whatever its mode).
        directory: created if needed; existing adapter files in it are replaced atomically.
        bias: loralib's bias mode: ``"none"``, ``"all"`` (every ``*bias`` tensor) or ``"lora_only"``
            (biases of LoRA layers), matching what ``mark_only_lora_as_trainable`` trained.
        modules_to_save: modules saved whole, e.g. ``["classifier"]`` for a trained task head; each
            entry is a qualified module name or a dotted suffix of one.
        metadata: free-form JSON-serialisable notes (task, step, metrics) kept in the config.

    Returns:
        The adapter directory.

    Raises:
        LoRAConfigError: ``bias`` is not a loralib mode, an entry of ``modules_to_save`` matches no
            module, or ``metadata`` is not JSON-serialisable.
    """
    check_bias_mode(bias)
    try:
        notes = dict(metadata or {})
        json_bytes(notes)
    except (TypeError, ValueError) as error:
        raise LoRAConfigError(
            f"metadata must be a JSON-serialisable mapping (str keys, finite numbers): {error}"
        ) from None
    saved_modules = resolve_modules(model, modules_to_save)
    payload, tensors = safetensors_payload(_adapter_tensors(model, bias, saved_modules), {"format": "pt"})
    document = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "base_model": _base_model_identity(model),
        "bias": bias,
        "modules_to_save": saved_modules,
        "layers": {name: _layer_record(layer) for name, layer in named_lora_layers(model)},
        "tensors": {k: {"shape": list(t.shape), "dtype": dtype_name(t.dtype)} for k, t in tensors.items()},
        "tensors_sha256": hashlib.sha256(payload).hexdigest(),
        "metadata": notes,
    }
    config_bytes = json_bytes(document)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # Tensors first: the config, written last, names the exact tensor file (by hash) it belongs to.
    write_atomic(directory / TENSORS_FILE, payload)
    write_atomic(directory / CONFIG_FILE, config_bytes)
    return directory


# -- reading and checking the files ------------------------------------------------------------


def _corrupt(directory: Path, detail: str) -> AdapterMismatchError:
    return AdapterMismatchError(
        f"the adapter in {directory} is corrupt: {detail}; save it again with lora.save_adapter"
    )


_REQUIRED_FIELDS: dict[str, type] = {
    "base_model": dict,
    "bias": str,
    "modules_to_save": list,
    "layers": dict,
    "tensors": dict,
    "tensors_sha256": str,
}
_REQUIRED_LAYER_FIELDS = (*_FUNCTIONAL_SETTINGS, "lora_dropout", "merge_weights", "base_layer_type")


def _read_config(directory: Path) -> dict[str, Any]:
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise AdapterMismatchError(
            f"no adapter in {directory}: {CONFIG_FILE} is missing; write one with lora.save_adapter(model, directory)"
        )
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _corrupt(directory, f"{CONFIG_FILE} is not valid JSON ({error})") from None
    if not isinstance(document, dict):
        raise _corrupt(directory, f"{CONFIG_FILE} holds a {type(document).__name__}, not an object")
    if "peft_type" in document:
        raise AdapterMismatchError(
            f"{directory} holds a PEFT adapter (peft_type={document['peft_type']!r}), not a lora-harness "
            "adapter; load it with peft.PeftModel.from_pretrained(base_model, directory)"
        )
    if document.get("format") != FORMAT_NAME:
        raise AdapterMismatchError(
            f"{path} is not a lora-harness adapter config (format={document.get('format')!r}, expected {FORMAT_NAME!r})"
        )
    version = document.get("format_version")
    if version != FORMAT_VERSION:
        raise AdapterMismatchError(
            f"adapter format version {version!r} in {directory} is not supported: this library reads "
            f"version {FORMAT_VERSION}; use the lora-harness release that wrote it"
        )
    for field, kind in _REQUIRED_FIELDS.items():
        if not isinstance(document.get(field), kind):
            raise _corrupt(directory, f"{CONFIG_FILE} lacks the {kind.__name__} field {field!r}")
    for name, record in document["layers"].items():
        absent = [f for f in _REQUIRED_LAYER_FIELDS if not isinstance(record, dict) or f not in record]
        if absent:
            raise _corrupt(directory, f"the record of layer {name!r} lacks {', '.join(absent)}")
    return document


def _read_tensors(directory: Path, document: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    path = directory / TENSORS_FILE
    if not path.is_file():
        raise AdapterMismatchError(
            f"{TENSORS_FILE} is missing from {directory} (its {CONFIG_FILE} is there); copy the whole "
            "adapter directory, or save it again with lora.save_adapter"
        )
    payload = path.read_bytes()
    digest = hashlib.sha256(payload).hexdigest()
    if digest != document["tensors_sha256"]:
        raise _corrupt(
            directory,
            f"{TENSORS_FILE} has sha256 {digest[:12]}… but {CONFIG_FILE} records "
            f"{document['tensors_sha256'][:12]}… (modified, truncated, or from another save)",
        )
    try:
        tensors = safetensors_load(payload)
    except Exception as error:  # safetensors raises its own error type for malformed headers
        raise _corrupt(directory, f"{TENSORS_FILE} cannot be read ({error})") from None
    listed = {key: (tuple(spec["shape"]), spec["dtype"]) for key, spec in document["tensors"].items()}
    found = {key: (tuple(t.shape), dtype_name(t.dtype)) for key, t in tensors.items()}
    if listed != found:
        differing = sorted(k for k in listed.keys() | found.keys() if listed.get(k) != found.get(k))
        raise _corrupt(directory, f"{TENSORS_FILE} does not hold the tensors listed: {_listing(differing)}")
    return tensors


def read_adapter(directory: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The checked config and tensors of an adapter directory, for tools that need its matrices but no model.

    Returns:
        The parsed ``adapter_config.json`` (its ``layers`` record each layer's settings) and the tensors
        of ``adapter.safetensors`` by state-dict key (``<layer>.lora_A``, ``<layer>.lora_B``, ...).

    Raises:
        AdapterMismatchError: a file is missing, corrupt, of another format or of an unknown version.
    """
    directory = Path(directory)
    document = _read_config(directory)
    return document, _read_tensors(directory, document)


# -- fitting the adapter to the model ----------------------------------------------------------


def _check_identity(model: nn.Module, document: Mapping[str, Any]) -> None:
    saved, ours = document["base_model"], _base_model_identity(model)
    if (saved.get("class_name"), saved.get("model_type")) != (ours["class_name"], ours["model_type"]):
        raise AdapterMismatchError(
            f"the adapter was saved from a {saved.get('model_type')} model ({saved.get('class_name')}, "
            f"{saved.get('name_or_path')}) but is being loaded into a {ours['model_type']} model "
            f"({ours['class_name']}); load it into the model class it was trained on, or pass strict=False "
            "to skip this check"
        )


def _differences(name: str, layer: LoRALayer, record: Mapping[str, Any]) -> list[str]:
    """Settings in which the model's LoRA layer ``name`` differs from the recorded one."""
    ours = _layer_record(layer)
    bad = [
        f"{key}={record[key]!r} in the adapter, {ours[key]!r} in the model"
        for key in _FUNCTIONAL_SETTINGS
        if ours[key] != record[key]
    ]
    base_types = (record["base_layer_type"], ours["base_layer_type"])
    if None not in base_types and base_types[0] != base_types[1]:
        bad.append(f"base_layer_type={base_types[0]!r} in the adapter, {base_types[1]!r} in the model")
    return [f"{name}: {text}" for text in bad]


def _base_differences(name: str, module: nn.Module, record: Mapping[str, Any]) -> list[str]:
    """Why the plain module ``name`` is not the base the recorded layer was trained on, if it is not."""
    kind = f"{type(module).__module__}.{type(module).__qualname__}"
    if record["base_layer_type"] is not None and kind != record["base_layer_type"]:
        return [f"{name}: the adapter adapts a {record['base_layer_type']}, the model has a {kind}"]
    weight = getattr(module, "weight", None)
    shape = list(weight.shape) if isinstance(weight, torch.Tensor) else None
    if shape != record["base_weight_shape"]:
        saved = tuple(record["base_weight_shape"])
        found = tuple(shape) if shape is not None else None
        return [f"{name}: the adapter was trained on a base weight of shape {saved}, the model's is {found}"]
    return []


def _get_module(model: nn.Module, name: str) -> nn.Module | None:
    try:
        return model.get_submodule(name)
    except AttributeError:
        return None


@dataclass
class _Injection:
    """One module replaced by a LoRA layer, with what is needed to put it back."""

    name: str
    original: nn.Module
    requires_grad: list[tuple[nn.Parameter, bool]]


def _undo(model: nn.Module, injections: Sequence[_Injection]) -> None:
    for injection in reversed(injections):
        parent_name, _, child = injection.name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, injection.original)
        for param, flag in injection.requires_grad:
            param.requires_grad = flag


def _plan(model: nn.Module, layers: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Check the recorded layers against the model; return the names of those to inject.

    Recorded layers whose module the model lacks are skipped here; their tensors surface later
    as unexpected keys.
    """
    problems: list[str] = []
    to_inject: list[str] = []
    for name, record in layers.items():
        module = _get_module(model, name)
        if module is None:
            continue
        if isinstance(module, LoRALayer):
            problems += _differences(name, module, record)
        else:
            problems += _base_differences(name, module, record)
            to_inject.append(name)
    if problems:
        raise AdapterMismatchError(
            f"the adapter does not fit this model's base: {_listing(problems, limit=4)}. Load it into the "
            "base model it was trained on (same size and layer types); LoRA layers already in the model "
            "must have the adapter's settings, or load into a model without them and let load_adapter "
            "inject them"
        )
    return to_inject


def _inject(
    model: nn.Module,
    names: Sequence[str],
    layers: Mapping[str, Mapping[str, Any]],
    tensors: Mapping[str, torch.Tensor],
) -> list[_Injection]:
    injections: list[_Injection] = []
    try:
        for name in names:
            record = layers[name]
            original = model.get_submodule(name)
            flags = [(p, p.requires_grad) for p in original.parameters(recurse=False)]
            saved_a = tensors.get(f"{name}.lora_A")
            layer = inject_lora_layer(
                model,
                name,
                r=record["r"],
                lora_alpha=record["lora_alpha"],
                lora_dropout=record["lora_dropout"],
                enable_lora=record["enable_lora"] if record["layer_type"] == "MergedLinear" else None,
                merge_weights=record["merge_weights"],
                use_rslora=record["use_rslora"],
                lora_dtype=saved_a.dtype if saved_a is not None else None,
            )
            injections.append(_Injection(name, original, flags))
            problems = _differences(name, layer, record)
            if problems:
                raise AdapterMismatchError(
                    f"injecting the recorded layer gave a different one: {_listing(problems)}; the adapter "
                    "was saved from a model whose modules differ from this one's"
                )
    except BaseException:
        _undo(model, injections)
        raise
    return injections


def _lora_keys(model: nn.Module) -> set[str]:
    keys = set()
    for name, layer in named_lora_layers(model):
        prefix = f"{name}." if name else ""
        keys |= {f"{prefix}{p}" for p in ("lora_A", "lora_B") if p in layer._parameters}  # type: ignore[attr-defined]
    return keys


def _matched_targets(
    model: nn.Module, tensors: Mapping[str, torch.Tensor], strict: bool, directory: Path
) -> dict[str, torch.Tensor]:
    """The model's tensors the adapter's tensors go into, after checking keys and shapes."""
    state = model.state_dict(keep_vars=True)
    shapes = [
        f"{key}: {tuple(t.shape)} in the adapter, {tuple(state[key].shape)} in the model"
        for key, t in tensors.items()
        if key in state and t.shape != state[key].shape
    ]
    if shapes:
        raise AdapterMismatchError(
            f"shape mismatch between the adapter in {directory} and the model: {_listing(shapes, limit=4)}. "
            "Build the model with the configuration the adapter was trained with (e.g. num_labels)"
        )
    if strict:
        missing = sorted(_lora_keys(model) - tensors.keys())
        unexpected = sorted(tensors.keys() - state.keys())
        if missing:
            raise AdapterMismatchError(
                f"the adapter in {directory} lacks {len(missing)} tensor(s) of the model's LoRA layers: "
                f"{_listing(missing)}. The model has LoRA layers the adapter does not cover; load into a "
                "model without them, or pass strict=False to leave them as they are"
            )
        if unexpected:
            raise AdapterMismatchError(
                f"the adapter in {directory} has {len(unexpected)} tensor(s) this model has no place for: "
                f"{_listing(unexpected)}. It was saved from a model with other modules; pass strict=False "
                "to load only the tensors that fit"
            )
    return {key: state[key] for key in tensors if key in state}


def load_adapter(model: nn.Module, directory: str | Path, *, strict: bool = True, lora_only: bool = False) -> nn.Module:
    """Load an adapter written by :func:`save_adapter` into ``model``, injecting its LoRA layers if needed.

    Modules the adapter adapts that are still plain in ``model`` become LoRA layers with the recorded
    settings, so a freshly loaded pretrained model is enough; LoRA layers already there must have the
    recorded settings. Everything is checked before any tensor is copied, and injections are undone if
    a check fails. Merged layers (eval mode) are re-merged with the loaded matrices.

    Args:
        model: the base model the adapter was trained on, with or without its LoRA layers; changed in place.
        directory: a directory written by :func:`save_adapter`.
        strict: require the adapter's tensors and the model's LoRA matrices to match one to one and the
            model's class and ``model_type`` to be the recorded ones. With ``strict=False`` tensors
            without a place in the model are skipped and uncovered LoRA layers keep their values;
            shapes and base weights must match in either case.
        lora_only: load the LoRA matrices only, not the saved biases and modules (e.g. start an RTE run
            from an MNLI adapter, whose 3-class head does not fit).

    Returns:
        ``model``.

    Raises:
        AdapterMismatchError: a file is missing, corrupt or of an unknown format version; the base model
            differs (class, ``model_type``, an adapted module's type or weight shape); a LoRA layer in the
            model has other settings; a tensor has another shape; or, with ``strict``, keys are missing
            or unexpected. The message names the offending keys or values and the fix.
    """
    directory = Path(directory)
    document = _read_config(directory)
    tensors = _read_tensors(directory, document)
    if lora_only:
        tensors = {key: value for key, value in tensors.items() if key.rpartition(".")[2].startswith("lora_")}
    if strict:
        _check_identity(model, document)
    layers = document["layers"]
    injections = _inject(model, _plan(model, layers), layers, tensors)
    try:
        targets = _matched_targets(model, tensors, strict, directory)
    except BaseException:
        _undo(model, injections)
        raise
    with torch.no_grad():
        for key, target in targets.items():
            target.copy_(tensors[key])
    # The merge cache also refreshes lazily on in-place changes; refresh now so it never serves stale weights.
    for _, layer in named_lora_layers(model):
        if layer.merged:
            layer.merge()
    return model
