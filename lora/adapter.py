"""Adapter files: the LoRA matrices of a model (and its trained head) on disk, loadable into a fresh base.

A directory holds two files, each replaced atomically:

* ``adapter.safetensors``: the LoRA matrices, the biases of the chosen loralib bias mode, and the whole
  state of every module in ``modules_to_save`` (e.g. a classification head), under the model's own
  state-dict keys, so ``model.load_state_dict(safetensors.torch.load_file(...), strict=False)`` also works;
* ``adapter_config.json``: the format name and version, every LoRA layer's record (its
  :class:`~lora.LoRAConfig` fields, ``dataclasses.asdict`` merged into the record, plus its type, layout,
  base weight shape and base weight fingerprint (enough to inject it again, and to recognise its base), the bias mode,
  ``modules_to_save``, the base model's identity (a name, never a local path), the tensor list with
  shapes and dtypes, the SHA-256 of the tensor file, ``checksums`` of all of these, and free-form
  ``metadata`` (the one part that may be edited).

:func:`load_adapter` injects the recorded LoRA layers into a model that lacks them (so an adapter loads
into a freshly loaded pretrained model), checks everything it can before changing the model, and undoes
its injections if a later check fails. It refuses an edited config, NaN/inf tensors, and base weights
other than those the adapter was trained on (such as a ``merge_and_unload`` output, which already
holds the update and would get it twice).

Format version 2 added the checksums and the fingerprints. Version 1 adapters still load (their tensor
file is still checked against its SHA-256) with a warning that edits and merged bases go undetected;
saving them again upgrades them. Version 3 records every ``LoRAConfig`` field (``init``, ``use_dora``), so
that a library reading version 2 refuses a DoRA adapter instead of loading it as a plain LoRA; version 2
records lack those fields and load with their defaults, which is what they computed.

A PiSSA-initialised layer is saved as the equivalent LoRA of rank 2r on the pretrained ``W0`` (see
:meth:`lora.Linear.as_plain_lora`), with the fingerprint of ``W0`` rebuilt in float32 as
``W_res + scaling * B0 A0``, so the adapter loads onto the original pretrained base, like any other.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, NoReturn

import torch
import torch.nn as nn
from safetensors.torch import load as safetensors_load

from lora._checks import check_bias_mode
from lora._fingerprint import fingerprint, fingerprint_distance, tolerance
from lora._integrity import edited_entries, non_finite, seal
from lora.config import LoRAConfig
from lora.errors import AdapterIntegrityError, AdapterMismatchError, BaseWeightsMismatchError, LoRAConfigError
from lora.files import dtype_name, json_bytes, safetensors_payload, write_atomic
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
    "record_config",
    "save_adapter",
]

CONFIG_FILE = "adapter_config.json"
TENSORS_FILE = "adapter.safetensors"
FORMAT_NAME = "lora-harness-adapter"
FORMAT_VERSION = 3
# Version 1 lacks checksums and base weight fingerprints; it is read, with a warning. Version 2 lacks
# the LoRAConfig fields added since (init, use_dora), which take their defaults.
_READABLE_VERSIONS = (1, 2, FORMAT_VERSION)

# Layer structure that changes what a layer computes; with the config's functional fields, an existing
# layer must agree on all of them.
_STRUCTURE = ("layer_type", "fan_in_fan_out", "enable_lora", "base_weight_shape")


def _listing(items: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" (and {len(items) - limit} more)" if len(items) > limit else "")


# -- saving ------------------------------------------------------------------------------------


def _portable_name(name_or_path: str | None) -> str | None:
    """A hub id as is; a local path (absolute, ``~``, ``.`` or an existing folder) reduced to its last part.

    A local path names a folder on one machine only, and would publish its owner's directory layout.
    """
    if not name_or_path:
        return None
    path = Path(name_or_path)
    if path.is_absolute() or name_or_path.startswith(("~", ".")) or path.expanduser().is_dir():
        return path.expanduser().resolve().name or None
    return name_or_path


def _base_model_identity(model: nn.Module, name: str | None = None) -> dict[str, str | None]:
    """Class name, ``config.model_type`` and base model name (``name`` or ``config._name_or_path``)."""
    config = getattr(model, "config", None)
    return {
        "class_name": type(model).__name__,
        "model_type": getattr(config, "model_type", None) or None,
        "name_or_path": name or _portable_name(getattr(config, "_name_or_path", None)),
    }


def _layer_record(layer: LoRALayer) -> dict[str, Any]:
    """Everything needed to rebuild ``layer`` (as a plain LoRA of its pretrained base, see PiSSA) and its base."""
    config = replace(layer.as_plain_lora()[0], lora_dropout=dropout_probability(layer))
    return {
        "layer_type": type(layer).__name__,
        **asdict(config),
        "fan_in_fan_out": getattr(layer, "fan_in_fan_out", None),
        "enable_lora": list(layer.enable_lora) if isinstance(layer, MergedLinear) else None,
        "base_layer_type": layer.base_layer_type,
        "base_weight_shape": list(layer.frozen_weight.shape),
    }


def _saved_layer_record(name: str, layer: LoRALayer) -> dict[str, Any]:
    """:func:`_layer_record` plus the fingerprint of the base weight the layer was trained on."""
    stamp = fingerprint(layer.pretrained_weight())
    if not all(math.isfinite(value) for value in stamp["sketch"]):  # type: ignore[attr-defined]
        raise LoRAConfigError(
            f"the base weight of {name} holds NaN or inf, so the adapter would not reproduce its outputs "
            "anywhere; load the pretrained weights again before training and saving"
        )
    return {**_layer_record(layer), "base_weight_fingerprint": stamp}


def _adapter_tensors(model: nn.Module, bias: str, modules: Sequence[str]) -> dict[str, torch.Tensor]:
    tensors = lora_state_dict(model, bias)
    for name, layer in named_lora_layers(model):
        if layer.has_lora:  # the factors on the pretrained base (rank 2r for PiSSA)
            _, a, b = layer.as_plain_lora()
            prefix = f"{name}." if name else ""
            tensors |= {f"{prefix}lora_A": a.detach(), f"{prefix}lora_B": b.detach()}
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
    base_model_name: str | None = None,
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
        base_model_name: the base model's name to record (e.g. ``"roberta-base"``); default:
            ``model.config._name_or_path``, reduced to its last part if it is a local path.

    Returns:
        The adapter directory.

    Raises:
        LoRAConfigError: ``model`` has no LoRA layer, ``bias`` is not a loralib mode, an entry of
            ``modules_to_save`` matches no module, ``metadata`` is not JSON-serialisable, or a
            tensor to save (or an adapted base weight) holds NaN or inf.
    """
    layers = list(named_lora_layers(model))
    if not layers:
        raise LoRAConfigError(
            f"{type(model).__name__} has no LoRA layer, so there is no adapter to save; add them with "
            "lora.inject_lora(model, targets) (or lora.load_adapter) before training, or save a fully "
            "fine-tuned model with its own save_pretrained/state_dict"
        )
    check_bias_mode(bias)
    try:
        notes = dict(metadata or {})
        json_bytes(notes)
    except (TypeError, ValueError) as error:
        raise LoRAConfigError(
            f"metadata must be a JSON-serialisable mapping (str keys, finite numbers): {error}"
        ) from None
    saved_modules = resolve_modules(model, modules_to_save)
    selected = _adapter_tensors(model, bias, saved_modules)
    bad = non_finite(selected)
    if bad:
        raise LoRAConfigError(
            f"cannot save the adapter: {len(bad)} tensor(s) hold NaN or inf: {_listing(bad)}. Training "
            "diverged (lower the learning rate, use fp32 or bf16 instead of fp16, clip gradients); save "
            "a checkpoint from before it did"
        )
    payload, tensors = safetensors_payload(selected, {"format": "pt"})
    document: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "base_model": _base_model_identity(model, base_model_name),
        "bias": bias,
        "modules_to_save": saved_modules,
        "layers": {name: _saved_layer_record(name, layer) for name, layer in layers},
        "tensors": {k: {"shape": list(t.shape), "dtype": dtype_name(t.dtype)} for k, t in tensors.items()},
        "tensors_sha256": hashlib.sha256(payload).hexdigest(),
    }
    document |= {"checksums": seal(document), "metadata": notes}
    config_bytes = json_bytes(document)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # Tensors first: the config, written last, names the exact tensor file (by hash) it belongs to.
    write_atomic(directory / TENSORS_FILE, payload)
    write_atomic(directory / CONFIG_FILE, config_bytes)
    return directory


# -- reading and checking the files ------------------------------------------------------------


def _corrupt(directory: Path, detail: str) -> AdapterIntegrityError:
    return AdapterIntegrityError(
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
# What every readable version records; config fields added since version 2 default when absent.
_REQUIRED_LAYER_FIELDS = ("layer_type", "r", "lora_alpha", "use_rslora", *_STRUCTURE[1:], "lora_dropout")
_REQUIRED_LAYER_FIELDS += ("merge_weights", "base_layer_type")


def record_config(record: Mapping[str, Any]) -> LoRAConfig:
    """The :class:`~lora.LoRAConfig` of a layer record (fields a file predates take their defaults)."""
    return LoRAConfig(**{f.name: record[f.name] for f in fields(LoRAConfig) if f.name in record})


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
    if version not in _READABLE_VERSIONS:
        raise AdapterMismatchError(
            f"adapter format version {version!r} in {directory} is not supported: this library reads "
            f"versions {', '.join(map(str, _READABLE_VERSIONS))}; use the lora-harness release that wrote it"
        )
    required = _REQUIRED_FIELDS | ({"checksums": dict} if version >= 2 else {})
    for field, kind in required.items():
        if not isinstance(document.get(field), kind):
            raise _corrupt(directory, f"{CONFIG_FILE} lacks the {kind.__name__} field {field!r}")
    for name, record in document["layers"].items():
        absent = [f for f in _REQUIRED_LAYER_FIELDS if not isinstance(record, dict) or f not in record]
        if absent:
            raise _corrupt(directory, f"the record of layer {name!r} lacks {', '.join(absent)}")
        try:
            record_config(record)
        except LoRAConfigError as error:
            raise _corrupt(directory, f"the record of layer {name!r} is invalid: {error}") from None
    if version < 2:
        warnings.warn(
            f"the adapter in {directory} has format version {version}, which has no checksums or base weight "
            "fingerprints: edits of its config and loading onto merged weights go undetected; load it and "
            "save it again with lora.save_adapter to upgrade it",
            UserWarning,
            stacklevel=3,
        )
        return document
    edited = edited_entries(document)
    if edited:
        raise AdapterIntegrityError(
            f"{CONFIG_FILE} was edited after saving: in {path}, {_listing(edited, limit=4)} no longer match "
            "the checksums save_adapter recorded, so the adapter would not compute what was trained. "
            "Restore the file as saved, or change the model and save the adapter again with "
            "lora.save_adapter (only 'metadata' may be edited by hand)"
        )
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
    bad = non_finite(tensors)
    if bad:
        raise AdapterIntegrityError(
            f"{TENSORS_FILE} in {directory} holds NaN or inf in {len(bad)} tensor(s): {_listing(bad)}; only "
            "finite values are allowed, as they came from a diverged run. Use an adapter saved before "
            "training diverged"
        )
    return tensors


def read_adapter(directory: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The checked config and tensors of an adapter directory, for tools that need its matrices but no model.

    Returns:
        The parsed ``adapter_config.json`` (its ``layers`` record each layer's settings) and the tensors
        of ``adapter.safetensors`` by state-dict key (``<layer>.lora_A``, ``<layer>.lora_B``, ...).

    Raises:
        AdapterMismatchError: a file is missing, corrupt, of another format or of an unknown version.
        AdapterIntegrityError: the config was edited after saving, or a tensor holds NaN or inf.
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
    if layer.config.init == "pissa":
        return [
            f"{name}: the model's layer is PiSSA-initialised, so its weight is the residual W0 - B0 A0, while "
            "adapters apply to the pretrained W0 (load into a model without LoRA layers)"
        ]
    ours = _layer_record(layer)
    settings = {**{key: record[key] for key in _STRUCTURE}, **record_config(record).functional()}
    bad = [
        f"{key}={value!r} in the adapter, {ours[key]!r} in the model"
        for key, value in settings.items()
        if ours[key] != value
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


def _fingerprint_differences(name: str, weight: torch.Tensor, record: Mapping[str, Any]) -> list[str]:
    """Why ``weight`` is not the base weight the recorded layer was trained on, if it is not.

    Records of format version 1 have no fingerprint, and weights on the meta device no values: both pass.
    """
    recorded = record.get("base_weight_fingerprint")
    if recorded is None or weight.is_meta:
        return []
    distance, allowed = fingerprint_distance(weight, recorded), tolerance(weight.dtype, recorded["dtype"])
    if distance <= allowed:
        return []
    return [
        f"{name}: its weight differs from the one trained on by {distance:.1e} (relative; rounding between "
        f"{dtype_name(weight.dtype)} here and {recorded['dtype']} when saved explains at most {allowed:.0e})"
    ]


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


def _plan(
    model: nn.Module,
    layers: Mapping[str, Mapping[str, Any]],
    tensors: Mapping[str, torch.Tensor],
    check_base_weights: bool,
) -> list[str]:
    """Check the recorded layers against the model; return the names of those to inject.

    Recorded layers whose module the model lacks are skipped here; their tensors surface later
    as unexpected keys. A base weight the adapter itself holds (its module was saved whole) is
    replaced by the load, so its fingerprint is not checked.
    """
    problems: list[str] = []
    other_weights: list[str] = []
    to_inject: list[str] = []
    for name, record in layers.items():
        module = _get_module(model, name)
        if module is None:
            continue
        if isinstance(module, LoRALayer):
            found = _differences(name, module, record)
            weight = module.frozen_weight
        else:
            found = _base_differences(name, module, record)
            weight = module.weight  # type: ignore[assignment]
            to_inject.append(name)
        problems += found
        replaced = {f"{name}.weight", f"{name}.conv.weight"} & tensors.keys()
        if check_base_weights and not found and not replaced:
            other_weights += _fingerprint_differences(name, weight, record)
    if problems:
        raise AdapterMismatchError(
            f"the adapter does not fit this model's base: {_listing(problems, limit=4)}. Load it into the "
            "base model it was trained on (same size and layer types); LoRA layers already in the model "
            "must have the adapter's settings, or load into a model without them and let load_adapter "
            "inject them"
        )
    if other_weights:
        raise BaseWeightsMismatchError(
            f"the model's base weights are not those the adapter was trained on: {_listing(other_weights, limit=4)}. "
            "They already hold a LoRA update (a merge_and_unload output, perhaps of this very adapter, "
            "which would then apply it twice) or come from another checkpoint. Load the adapter into the "
            "pretrained base it was trained on, or pass check_base_weights=False to apply it to other "
            "weights on purpose"
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
                config=record_config(record),
                enable_lora=record["enable_lora"] if record["layer_type"] == "MergedLinear" else None,
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
        keys |= {f"{prefix}{p}" for p in layer._parameters if p.startswith("lora_")}  # type: ignore[attr-defined]
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


def _nothing_fits(
    directory: Path, model: nn.Module, document: Mapping[str, Any], tensors: Mapping[str, Any]
) -> NoReturn:
    saved = document["base_model"]
    raise AdapterMismatchError(
        f"nothing of the adapter in {directory} fits {type(model).__name__}: none of its {len(document['layers'])} "
        f"LoRA layer(s) and {len(tensors)} tensor(s) (e.g. {', '.join(sorted(tensors)[:2])}) has a place in "
        f"it, so strict=False would load nothing. It was saved from a {saved.get('model_type')} model "
        f"({saved.get('class_name')}, {saved.get('name_or_path')}); load it into that base model"
    )


def load_adapter(
    model: nn.Module,
    directory: str | Path,
    *,
    strict: bool = True,
    lora_only: bool = False,
    check_base_weights: bool = True,
) -> nn.Module:
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
        check_base_weights: require every adapted weight to match the recorded fingerprint of the
            weight the adapter was trained on (up to rounding when the dtype differs). Turn it off only
            to apply an adapter to other weights on purpose, e.g. to a fine-tune of its base.

    Returns:
        ``model``.

    Raises:
        AdapterMismatchError: a file is missing, corrupt or of an unknown format version; the base model
            differs (class, ``model_type``, an adapted module's type or weight shape); a LoRA layer in the
            model has other settings; a tensor has another shape; with ``strict``, keys are missing
            or unexpected; without it, nothing of the adapter fits. The message names the offending keys
            or values and the fix.
        AdapterIntegrityError: the config was edited after saving, or a tensor holds NaN or inf.
        BaseWeightsMismatchError: an adapted weight is not the one trained on, e.g. it already holds
            this adapter's update (a ``merge_and_unload`` output).
    """
    directory = Path(directory)
    document = _read_config(directory)
    tensors = _read_tensors(directory, document)
    if lora_only:
        tensors = {key: value for key, value in tensors.items() if key.rpartition(".")[2].startswith("lora_")}
    if strict:
        _check_identity(model, document)
    layers = document["layers"]
    injections = _inject(model, _plan(model, layers, tensors, check_base_weights), layers, tensors)
    try:
        targets = _matched_targets(model, tensors, strict, directory)
        if not targets and not any(_get_module(model, name) is not None for name in layers):
            _nothing_fits(directory, model, document, tensors)
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
