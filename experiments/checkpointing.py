"""Training checkpoints that make a killed run resume to the same final metrics, holding no executable data.

A checkpoint holds only what training changes (the trainable parameters, the optimizer, scheduler and
grad-scaler states) plus the step counter and the evaluation history; frozen weights are reloaded from
their source. Random streams need no saving: the training loop reseeds from (seed, step, rank).

On disk it is tensors and plain JSON, never a pickle (unpickling a file planted in a run directory would
run its code): ``trainable.<id>.safetensors``, ``optimizer.<id>.safetensors`` (the optimizer's state
tensors, flattened) and ``state.json``, the manifest, written last. The manifest names the tensor files
of its save with their sha256, so a kill at any moment leaves the previous complete set (files of an
unfinished save are not named by any manifest and are removed by the next save), and a truncated or
altered file is detected instead of half-loaded.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from experiments.atomic import atomic_write
from experiments.fingerprints import sha256_file

__all__ = ["CheckpointError", "CheckpointMismatchError", "Checkpointer", "TrainState"]

STATE_FILE = "state.json"
PICKLE_FILE = "checkpoint.pt"  # what earlier versions wrote; never loaded
_FORMAT = 1
_KINDS = ("trainable", "optimizer")


class CheckpointError(RuntimeError):
    """The checkpoint in the run directory cannot be resumed (unreadable, altered, or a pickle)."""


class CheckpointMismatchError(CheckpointError):
    """The checkpoint in the run directory was written by a different configuration."""


@dataclass
class TrainState:
    """Progress that survives a restart."""

    global_step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    elapsed_s: float = 0.0
    epoch_loss_sum: float = 0.0
    epoch_loss_count: float = 0.0
    tokens_seen: int = 0


class Checkpointer:
    """Saves and restores :class:`TrainState` with the trainable tensors in ``directory``, as one set."""

    def __init__(self, directory: Path, fingerprint: str) -> None:
        self.directory = Path(directory)
        self.path = self.directory / STATE_FILE
        self.fingerprint = fingerprint

    def exists(self) -> bool:
        """Whether there is a checkpoint to resume; a pickle checkpoint is refused, not loaded."""
        pickle = self.directory / PICKLE_FILE
        if pickle.exists():
            raise CheckpointError(
                f"{pickle} is a pickle checkpoint, which is never loaded (unpickling can run any code); "
                "pass overwrite=true to discard this run directory and start the run over"
            )
        return self.path.is_file()

    def save(self, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler, scaler, state: TrainState) -> None:
        """Write the tensor files, then the manifest naming them; then drop the files of earlier saves."""
        token = f"{state.global_step:08d}-{secrets.token_hex(4)}"
        trainable = {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}
        optimizer_tensors, optimizer_plain = _split_optimizer_state(optimizer.state_dict())
        files = {}
        for kind, tensors in zip(_KINDS, (trainable, optimizer_tensors), strict=True):
            path = atomic_write(
                self.directory / f"{kind}.{token}.safetensors", lambda tmp, t=tensors: save_file(t, str(tmp))
            )
            files[kind] = {"name": path.name, "sha256": sha256_file(path)}
        manifest = {
            "format": _FORMAT,
            "fingerprint": self.fingerprint,
            "files": files,
            "optimizer": optimizer_plain,
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "state": dataclasses.asdict(state),
        }
        text = json.dumps(manifest, indent=1, default=_plain)
        atomic_write(self.path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
        keep = {entry["name"] for entry in files.values()}
        for old in self.directory.glob("*.safetensors"):
            if old.name not in keep:
                old.unlink(missing_ok=True)

    def load(self, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler, scaler) -> TrainState:
        """Restore the saved state into the given objects; a bad checkpoint raises before anything changes."""
        manifest, tensors = self._read()
        if manifest["fingerprint"] != self.fingerprint:
            raise CheckpointMismatchError(
                f"{self.path} was written by a different configuration (fingerprint "
                f"{manifest['fingerprint']} != {self.fingerprint}); delete the run directory "
                "or pass overwrite=true to start over"
            )
        params = dict(model.named_parameters())
        unknown = sorted(set(tensors["trainable"]) - set(params))
        if unknown:
            raise self._unreadable(f"it holds parameters this model lacks: {', '.join(unknown[:3])}")
        with torch.no_grad():
            for name, tensor in tensors["trainable"].items():
                params[name].copy_(tensor)
        optimizer.load_state_dict(_join_optimizer_state(tensors["optimizer"], manifest["optimizer"]))
        scheduler.load_state_dict(manifest["scheduler"])
        scaler.load_state_dict(manifest["scaler"])
        return TrainState(**manifest["state"])

    def _read(self) -> tuple[dict[str, Any], dict[str, dict[str, torch.Tensor]]]:
        """The manifest and its verified tensor files, or a :class:`CheckpointError` naming the fix."""
        try:
            manifest = json.loads(self.path.read_text(encoding="utf-8"))
            if manifest.get("format") != _FORMAT:
                raise ValueError(f"unknown format {manifest.get('format')!r}")
            tensors = {}
            for kind in _KINDS:
                entry = manifest["files"][kind]
                path = self.directory / Path(entry["name"]).name
                if sha256_file(path) != entry["sha256"]:
                    raise ValueError(f"{path.name} does not match its sha256 in {STATE_FILE} (truncated or altered)")
                tensors[kind] = load_file(path)
        except (OSError, ValueError, KeyError, TypeError, AttributeError, SafetensorError) as error:
            raise self._unreadable(f"{type(error).__name__}: {error}") from error
        return manifest, tensors

    def _unreadable(self, detail: str) -> CheckpointError:
        return CheckpointError(
            f"the checkpoint in {self.directory} cannot be resumed ({detail}); pass overwrite=true to discard "
            "this run directory and start the run over"
        )


def _plain(value: Any) -> Any:
    """JSON for the scalars a state dict may hold besides Python numbers (0-d tensors, numpy scalars)."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} cannot be stored in a checkpoint manifest")


def _split_optimizer_state(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The optimizer's per-parameter tensors as ``"<index>.<slot>"`` entries, and the rest as plain data."""
    tensors: dict[str, torch.Tensor] = {}
    other: dict[str, dict[str, Any]] = {}
    for index, slots in state_dict["state"].items():
        for slot, value in slots.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{slot}"] = value.detach().cpu().contiguous()
            else:
                other.setdefault(str(index), {})[slot] = value
    return tensors, {"param_groups": state_dict["param_groups"], "state": other}


def _join_optimizer_state(tensors: dict[str, torch.Tensor], plain: dict[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`_split_optimizer_state`."""
    state: dict[int, dict[str, Any]] = {}
    for key, tensor in tensors.items():
        index, slot = key.split(".", 1)
        state.setdefault(int(index), {})[slot] = tensor
    for index, slots in plain["state"].items():
        state.setdefault(int(index), {}).update(slots)
    return {"state": state, "param_groups": plain["param_groups"]}
