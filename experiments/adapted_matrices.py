"""The adapted matrices of a saved adapter, by paper name and block, for the Section 7 analyses.

An input is an adapter directory (``adapter_config.json`` + ``adapter.safetensors``), a run directory of
the GLUE/E2E runners (which holds ``adapter/``), or a folder with exactly one such run below it. Each LoRA
layer becomes one :class:`AdaptedMatrix`; a fused projection (GPT-2's ``c_attn``) becomes one per
enabled slice, named after the paper's matrix (``Wq``, ``Wv``) where :mod:`lora.architectures` knows it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from experiments.methods import METHODS
from lora.adapter import CONFIG_FILE, read_adapter
from lora.architectures import ARCHITECTURES, PAPER_MATRICES

__all__ = [
    "AdaptedMatrix",
    "AdapterSource",
    "AnalysisInputError",
    "find_adapter_dirs",
    "frozen_weights",
    "pair_matrices",
    "read_source",
    "select_matrices",
]

_LINEAR_TYPES = ("Linear", "MergedLinear")


class AnalysisInputError(ValueError):
    """An analysis input is not what it needs: not a LoRA adapter, mismatched adapters, a missing matrix."""


@dataclass(frozen=True)
class AdaptedMatrix:
    """One adapted weight: a LoRA layer's ``dW = scaling * B A``, or one enabled slice of a fused layer."""

    module: str  # qualified module name in the adapter
    matrix: str  # the paper's name (Wq, Wk, Wv, Wo, ...) or, if unknown, the module's own name
    layer: int | None  # the transformer block, from the first index in the module name
    slice_index: int | None  # the output slice of a fused projection, None for a whole module
    n_slices: int
    a: torch.Tensor  # (r, d_in)
    b: torch.Tensor  # (d_out, r); d_out is the slice's size for a fused projection
    scaling: float  # lora_alpha / r, or lora_alpha / sqrt(r) with rsLoRA
    fan_in_fan_out: bool  # the base weight is stored (d_in, d_out), as GPT-2's Conv1D

    @property
    def key(self) -> str:
        """What identifies the matrix across adapters of one base model."""
        return self.module if self.slice_index is None else f"{self.module}[{self.slice_index}]"

    @property
    def label(self) -> str:
        """A short display name, e.g. ``L3 Wq``."""
        return self.matrix if self.layer is None else f"L{self.layer} {self.matrix}"

    @property
    def r(self) -> int:
        """The LoRA rank of this matrix."""
        return self.a.shape[0]

    @property
    def d_in(self) -> int:
        """Input features of the adapted weight."""
        return self.a.shape[1]

    @property
    def d_out(self) -> int:
        """Output features of the adapted weight (of its slice, for a fused projection)."""
        return self.b.shape[0]

    def delta(self) -> torch.Tensor:
        """``dW = scaling * B A`` as (d_out, d_in), in float64."""
        return self.scaling * (self.b.double() @ self.a.double())

    def frozen(self, weight: torch.Tensor) -> torch.Tensor:
        """The part of the base module's weight this matrix adapts, as (d_out, d_in) in float64."""
        oriented = weight.transpose(0, 1) if self.fan_in_fan_out else weight
        if self.slice_index is not None:
            oriented = oriented[self.slice_index * self.d_out : (self.slice_index + 1) * self.d_out]
        return oriented.double()


@dataclass(frozen=True)
class AdapterSource:
    """An adapter read from disk with what is known of the run that trained it."""

    path: Path  # the adapter directory
    run_dir: Path | None
    model: str | None
    task: str | None
    seed: int | None
    base_model: str | None  # name or folder of the pretrained model, as recorded
    matrices: tuple[AdaptedMatrix, ...]
    unsupported: tuple[str, ...]  # LoRA layers the analyses cannot take (embeddings, convolutions)

    @property
    def label(self) -> str:
        """``r8 seed0``-style name of the adapter, for titles and file names."""
        ranks = sorted({m.r for m in self.matrices})
        text = "r" + "-".join(str(r) for r in ranks) if ranks else "r?"
        return text if self.seed is None else f"{text} seed{self.seed}"


def find_adapter_dirs(path: str | Path) -> list[Path]:
    """Every adapter directory at or below ``path`` (a run directory contributes its ``adapter/``)."""
    path = Path(path)
    if (path / CONFIG_FILE).is_file():
        return [path]
    return sorted(p.parent for p in path.rglob(CONFIG_FILE) if "multirun" not in p.parts)


def _resolve(path: Path, seed: int | None) -> Path:
    if not path.exists():
        raise AnalysisInputError(f"{path} does not exist; pass a LoRA run directory or an adapter directory")
    found = find_adapter_dirs(path)
    if seed is not None and found:
        chosen = [p for p in found if f"seed{seed}" in p.parts]
        if not chosen:
            listing = "\n  ".join(str(p) for p in found[:10])
            raise AnalysisInputError(f"{path} holds no seed{seed} run; its adapters are:\n  {listing}")
        found = chosen
    if len(found) == 1:
        return found[0]
    if not found:
        result = path / "result.json"
        if result.is_file():
            method = json.loads(result.read_text(encoding="utf-8")).get("method")
            if method not in METHODS or METHODS[method].artefact != "adapter":
                raise AnalysisInputError(
                    f"{path} is a {method} run, which has no LoRA adapter; pass the run directory of a LoRA run"
                )
        raise AnalysisInputError(
            f"{path} is not a LoRA adapter or run directory: no {CONFIG_FILE} in it or below it. Pass a folder "
            "written by lora.save_adapter, or a LoRA run directory runs/<family>/<model>/<task>/<tag>/seed<k>"
        )
    listing = "\n  ".join(str(p) for p in found[:10])
    hint = "" if seed is not None else " or choose one with --seed"
    raise AnalysisInputError(f"{path} holds {len(found)} adapters; pass one of them{hint}:\n  {listing}")


def _run_metadata(adapter_dir: Path, metadata: Mapping[str, Any]) -> tuple[Path | None, dict[str, Any]]:
    """The run directory of an adapter and its identity (model, task, seed, model source), where known."""
    run_dir = adapter_dir.parent if adapter_dir.name == "adapter" else None
    info = {key: metadata.get(key) for key in ("model", "task", "seed")}
    result = run_dir / "result.json" if run_dir else None
    if result is not None and result.is_file():
        data = json.loads(result.read_text(encoding="utf-8"))
        info.update({key: data[key] for key in ("model", "task", "seed", "model_source") if data.get(key) is not None})
    return run_dir, info


def _paper_name(module: str, slice_index: int | None, n_slices: int, model_type: str | None) -> str | None:
    known = [arch for arch in ARCHITECTURES if model_type in arch.model_types] or list(ARCHITECTURES)
    for arch in known:
        for name, site in arch.matrices.items():
            fits_slice = site.slice_index == slice_index and (slice_index is None or site.n_slices == n_slices)
            if fits_slice and site.matches(module):
                return name
    return None


def _layer_index(module: str) -> int | None:
    found = re.search(r"\.(\d+)(?:\.|$)", module)
    return int(found.group(1)) if found else None


def _corrupt(path: Path, module: str, detail: str) -> AnalysisInputError:
    return AnalysisInputError(f"the adapter in {path} is inconsistent at {module}: {detail}; save it again")


def _layer_matrices(
    path: Path, module: str, record: Mapping[str, Any], tensors: Mapping[str, torch.Tensor], model_type: str | None
) -> list[AdaptedMatrix]:
    """The adapted matrices of one linear LoRA layer, checked against its recorded shapes."""
    a, b = tensors.get(f"{module}.lora_A"), tensors.get(f"{module}.lora_B")
    if a is None or b is None:
        raise _corrupt(path, module, "its lora_A or lora_B tensor is missing")
    if record.get("use_dora"):
        raise AnalysisInputError(
            f"{path} is a DoRA adapter ({module}): its update is not scaling * B A alone (a learned magnitude "
            "rescales W0 + dW), so the Section 7 analyses, defined on dW = B A, do not apply; analyse LoRA runs"
        )
    r = record["r"]
    scaling = record["lora_alpha"] / (math.sqrt(r) if record["use_rslora"] else r)
    fifo = bool(record["fan_in_fan_out"])
    shape = list(record["base_weight_shape"])
    out_features, in_features = (shape[1], shape[0]) if fifo else (shape[0], shape[1])
    flags = list(record["enable_lora"] or [True]) if record["layer_type"] == "MergedLinear" else [True]
    enabled = [g for g, flag in enumerate(flags) if flag]
    size = out_features // len(flags)
    if a.shape != (r * len(enabled), in_features) or b.shape != (size * len(enabled), r):
        raise _corrupt(
            path, module, f"A {tuple(a.shape)} and B {tuple(b.shape)} do not fit r={r} and base weight {tuple(shape)}"
        )
    whole = len(flags) == 1
    matrices = []
    for k, g in enumerate(enabled):
        slice_index = None if whole else g
        paper = _paper_name(module, slice_index, len(flags), model_type)
        own = module.rpartition(".")[2] + ("" if whole else f"[{g}]")
        matrices.append(
            AdaptedMatrix(
                module=module,
                matrix=paper or own,
                layer=_layer_index(module),
                slice_index=slice_index,
                n_slices=len(flags),
                a=a[k * r : (k + 1) * r],
                b=b[k * size : (k + 1) * size],
                scaling=scaling,
                fan_in_fan_out=fifo,
            )
        )
    return matrices


def _order(matrix: AdaptedMatrix) -> tuple:
    rank = PAPER_MATRICES.index(matrix.matrix) if matrix.matrix in PAPER_MATRICES else len(PAPER_MATRICES)
    return (-1 if matrix.layer is None else matrix.layer, rank, matrix.key)


def read_source(path: str | Path, seed: int | None = None) -> AdapterSource:
    """Read the adapter at or below ``path`` (``seed`` picks among the seeds of one run tag)."""
    adapter_dir = _resolve(Path(path), seed)
    document, tensors = read_adapter(adapter_dir)
    model_type = document["base_model"].get("model_type")
    matrices: list[AdaptedMatrix] = []
    unsupported: list[str] = []
    for module, record in document["layers"].items():
        if record["layer_type"] not in _LINEAR_TYPES:
            unsupported.append(f"{module} ({record['layer_type']})")
        elif record["r"] > 0 and (record["layer_type"] == "Linear" or any(record["enable_lora"] or [])):
            matrices.extend(_layer_matrices(adapter_dir, module, record, tensors, model_type))
    run_dir, info = _run_metadata(adapter_dir, document.get("metadata") or {})
    return AdapterSource(
        path=adapter_dir,
        run_dir=run_dir,
        model=info.get("model"),
        task=info.get("task"),
        seed=info.get("seed"),
        base_model=info.get("model_source") or document["base_model"].get("name_or_path"),
        matrices=tuple(sorted(matrices, key=_order)),
        unsupported=tuple(unsupported),
    )


def select_matrices(source: AdapterSource, matrices: Sequence[str] | None = None) -> list[AdaptedMatrix]:
    """The adapted matrices named in ``matrices`` (paper or module names; all when None), in layer order."""
    if source.unsupported and not matrices:
        raise AnalysisInputError(
            f"the adapter in {source.path} has LoRA layers the Section 7 analyses do not take (only linear "
            f"layers): {', '.join(source.unsupported[:4])}; choose linear ones with --matrices, e.g. Wq Wv"
        )
    if not matrices:
        if not source.matrices:
            raise AnalysisInputError(f"the adapter in {source.path} has no LoRA layer with r > 0")
        return list(source.matrices)
    chosen = [m for m in source.matrices if m.matrix in matrices]
    absent = [name for name in matrices if not any(m.matrix == name for m in chosen)]
    if absent:
        present = sorted({m.matrix for m in source.matrices}, key=lambda n: _order_name(n))
        raise AnalysisInputError(
            f"the adapter in {source.path} adapts no {', '.join(absent)}: it adapts {', '.join(present) or 'nothing'}"
        )
    return chosen


def _order_name(name: str) -> tuple[int, str]:
    return (PAPER_MATRICES.index(name) if name in PAPER_MATRICES else len(PAPER_MATRICES), name)


def pair_matrices(
    first: AdapterSource, second: AdapterSource, matrices: Sequence[str] | None = None
) -> list[tuple[AdaptedMatrix, AdaptedMatrix]]:
    """The same layer's matrix in two adapters, for every selected matrix; both must adapt the same ones."""
    ours = {m.key: m for m in select_matrices(first, matrices)}
    theirs = {m.key: m for m in select_matrices(second, matrices)}
    if not ours.keys() & theirs.keys():
        raise AnalysisInputError(
            f"the adapters adapt different layers ({_names(ours.values())} in {first.path}; "
            f"{_names(theirs.values())} in {second.path}); compare adapters of the same base model and targets"
        )
    only = sorted(ours.keys() ^ theirs.keys())
    if only:
        raise AnalysisInputError(
            f"the adapters do not adapt the same matrices: {', '.join(only[:6])} only in one of them; "
            "restrict both with --matrices to the ones they share"
        )
    pairs = [(ours[key], theirs[key]) for key in ours]
    for one, other in pairs:
        if (one.d_out, one.d_in) != (other.d_out, other.d_in):
            raise AnalysisInputError(
                f"{one.label} ({one.key}) is {one.d_out} x {one.d_in} in {first.path} but {other.d_out} x "
                f"{other.d_in} in {second.path}: the adapters come from different base models"
            )
    return pairs


def _names(matrices: Iterable[AdaptedMatrix]) -> str:
    labels = [m.label for m in matrices]
    return ", ".join(labels[:4]) + (f" and {len(labels) - 4} more" if len(labels) > 4 else "")


def frozen_weights(base_model: str | Path, matrices: Sequence[AdaptedMatrix]) -> dict[str, torch.Tensor]:
    """The pretrained W each matrix adapts, as (d_out, d_in) float64, from a Hugging Face model name or folder.

    Adapter module names may carry a task-model prefix (``roberta.``, ``transformer.``) that the bare
    model lacks; a weight is found by dotted-suffix match and must have the recorded shape.
    """
    model, missing = _load_base(base_model)
    state = model.state_dict()
    weights: dict[str, torch.Tensor] = {}
    for matrix in matrices:
        wanted = f"{matrix.module}.weight"
        hits = [k for k in state if k == wanted or wanted.endswith(f".{k}") or k.endswith(f".{wanted}")]
        if len(hits) != 1:
            found = "no weight" if not hits else f"several weights ({', '.join(hits[:3])})"
            raise AnalysisInputError(
                f"the base model {base_model!r} has {found} for {matrix.module}; pass the model the adapter was "
                "trained on with --base"
            )
        if hits[0] in missing:
            raise AnalysisInputError(
                f"the base model {base_model!r} does not hold {hits[0]} (transformers initialised it at random); "
                "pass the pretrained model the adapter was trained on with --base"
            )
        weight = state[hits[0]]
        expected = (matrix.d_in, matrix.d_out * matrix.n_slices)
        expected = expected if matrix.fan_in_fan_out else expected[::-1]
        if tuple(weight.shape) != expected:
            raise AnalysisInputError(
                f"{hits[0]} of {base_model!r} has shape {tuple(weight.shape)}, but the adapter was trained on a "
                f"weight of shape {expected}; pass the model the adapter was trained on with --base"
            )
        weights[matrix.key] = matrix.frozen(weight.detach())
    return weights


def _load_base(base_model: str | Path) -> tuple[torch.nn.Module, set[str]]:
    """The bare pretrained model and the names of the weights its checkpoint lacked, loaded quietly."""
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # the load report lists weights the analysis does not use (e.g. a pooler)
    hf_logging.disable_progress_bar()
    try:
        model, info = AutoModel.from_pretrained(str(base_model), output_loading_info=True)
    except (OSError, ValueError) as error:
        raise AnalysisInputError(
            f"cannot load the base model {base_model!r} ({error}); pass its name or folder with --base"
        ) from None
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    return model, set(info.get("missing_keys", ()))
