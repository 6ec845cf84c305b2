"""The per-step training curve of a run: one JSON object per logged step in ``train_log.jsonl``.

A resumed run continues the same file: entries written after the checkpoint it resumes from are dropped
first, so the file always describes one uninterrupted trajectory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

__all__ = ["STEP_LOG_FILE", "StepLog", "read_step_log"]

STEP_LOG_FILE = "train_log.jsonl"


class StepLog:
    """Appends ``{step, epoch, loss, lr, grad_norm, examples_per_s, tokens_per_s}`` records, keeping those up to
    ``after_step`` (as :attr:`kept`, for the trackers a resumed run replays them into)."""

    def __init__(self, path: Path, after_step: int = 0) -> None:
        self.path = Path(path)
        self.kept = [record for record in read_step_log(self.path) if record["step"] <= after_step]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("".join(json.dumps(record) + "\n" for record in self.kept), encoding="utf-8")

    def write(
        self,
        step: int,
        epoch: int,
        loss: float,
        lr: float,
        grad_norm: torch.Tensor | float | None,
        examples_per_s: float | None = None,
        tokens_per_s: float | None = None,
    ) -> dict[str, Any]:
        """Append one step's record and return it.

        ``grad_norm`` is the pre-clipping norm (None when not clipping); the rates are over the steps since
        the previous record, evaluation excluded (``tokens_per_s`` None where batches carry no token count).
        """
        norm = None if grad_norm is None else float(grad_norm)
        record = {
            "step": step,
            "epoch": epoch,
            "loss": loss,
            "lr": lr,
            "grad_norm": norm,
            "examples_per_s": examples_per_s,
            "tokens_per_s": tokens_per_s,
        }
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        return record


def read_step_log(path: Path) -> list[dict[str, Any]]:
    """The records of a step log, or an empty list where there is none."""
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
