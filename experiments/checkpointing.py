"""Training checkpoints that make a killed run resume to the same final metrics.

A checkpoint holds only what training changes (the trainable parameters, the optimizer, scheduler and
grad-scaler states) plus the step counter and the evaluation history; frozen weights are reloaded from
their source. Random streams need no saving: the training loop reseeds from (seed, step, rank).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from experiments.atomic import atomic_write

__all__ = ["CheckpointMismatchError", "Checkpointer", "TrainState"]


class CheckpointMismatchError(RuntimeError):
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
    """Saves and restores :class:`TrainState` with the trainable tensors, in one atomic file."""

    def __init__(self, directory: Path, fingerprint: str) -> None:
        self.path = Path(directory) / "checkpoint.pt"
        self.fingerprint = fingerprint

    def exists(self) -> bool:
        return self.path.is_file()

    def save(self, model: nn.Module, optimizer, scheduler, scaler, state: TrainState) -> None:
        payload = {
            "fingerprint": self.fingerprint,
            "trainable": {n: p.detach().cpu() for n, p in model.named_parameters() if p.requires_grad},
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "state": state.__dict__,
        }
        atomic_write(self.path, lambda tmp: torch.save(payload, tmp))

    def load(self, model: nn.Module, optimizer, scheduler, scaler) -> TrainState:
        payload = torch.load(self.path, map_location="cpu", weights_only=False)
        if payload.get("fingerprint") != self.fingerprint:
            raise CheckpointMismatchError(
                f"{self.path} was written by a different configuration (fingerprint "
                f"{payload.get('fingerprint')} != {self.fingerprint}); delete the run directory "
                "or pass overwrite=true to start over"
            )
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, tensor in payload["trainable"].items():
                params[name].copy_(tensor)
        optimizer.load_state_dict(payload["optimizer"])
        scheduler.load_state_dict(payload["scheduler"])
        scaler.load_state_dict(payload["scaler"])
        return TrainState(**payload["state"])

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
