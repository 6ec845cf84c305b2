"""What a task family tells the run skeleton: its data, model, training batches, evaluation and record."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn as nn

from experiments.fingerprints import tokenizer_fingerprint
from experiments.methods import Method
from experiments.models import load_tokenizer
from experiments.tokenized import TokenCache, cache_folder
from experiments.training import FitOutcome, TrainSettings

__all__ = ["TaskFamily"]


class TaskFamily:
    """One family of tasks (GLUE, E2E) for one composed config; :meth:`load` before training."""

    family: ClassVar[str]
    selects_best_epoch: ClassVar[bool]  # the paper reports GLUE's best epoch; E2E decodes the final model

    def __init__(self, cfg: Mapping[str, Any]) -> None:
        self.cfg = cfg
        self.device = torch.device("cpu")
        self.train_items: list[Any] = []

    @property
    def name(self) -> str:
        return str(self.cfg["task"]["name"])

    @property
    def main_metric(self) -> str:
        return str(self.cfg["task"]["main_metric"])

    def data_fingerprint(self) -> str | None:
        """The content fingerprint of the data files a run will read (None for the hub), without parsing."""
        raise NotImplementedError

    @cached_property
    def tokenizer(self) -> Any:
        """The model's tokenizer, loaded once: the runner fingerprints it before :meth:`load` encodes with it."""
        model = self.cfg["model"]
        return load_tokenizer(model["name_or_path"], model.get("gguf_file"))

    @cached_property
    def tokenizer_fingerprint(self) -> str:
        """What the run records of its tokenizer, so a run resumed with another one is refused."""
        return tokenizer_fingerprint(self.tokenizer)

    def token_cache(self, data_fingerprint: str) -> TokenCache:
        """Where the encoded splits of data with ``data_fingerprint`` are kept (``data.cache_dir``)."""
        return TokenCache(cache_folder(self.cfg["data"].get("cache_dir")), data_fingerprint, self.tokenizer_fingerprint)

    def load(self, device: torch.device) -> None:
        """Read the data and encode its splits (each once: later runs read the cached encoding)."""
        raise NotImplementedError

    def build_model(self) -> nn.Module:
        """The pretrained model with the family's head (seeded by the caller)."""
        raise NotImplementedError

    def collate(self, items: list[Any]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def loss_sum(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The summed (not averaged) training loss of a batch."""
        raise NotImplementedError

    def item_count(self, item: Any) -> int:
        """How many loss terms an item contributes (1 per example; target tokens for language modelling)."""
        return 1

    def evaluate(self, model: nn.Module, epoch: int) -> dict[str, Any]:
        """Metrics after an epoch (rank 0 only, model in eval mode)."""
        raise NotImplementedError

    def finish(self, model: nn.Module, outcome: FitOutcome, run_dir: Path) -> dict[str, Any]:
        """The family's part of the result: ``main_metric``, its value, ``metrics``, ``data``, outputs."""
        raise NotImplementedError

    def recipe(self, method: Method) -> dict[str, Any]:
        """The recipe (the paper's hyperparameters) this run was composed from."""
        raise NotImplementedError

    def headline(self, result: Mapping[str, Any]) -> str:
        """The scores worth a line at the end of the run."""
        raise NotImplementedError

    def extra_hyperparameters(self) -> dict[str, Any]:
        """Settings of the family's own that the result records beside the optimiser's."""
        return {}

    def banner(self, method: Method, counts: Any, settings: TrainSettings, world: int, run_dir: Path) -> str:
        """The start-of-run banner: what trains, how much data, the effective batch and step budget."""
        per_device = settings.per_device_batch_size or -(-settings.batch_size // world)
        accumulation = -(-settings.batch_size // (per_device * world))
        steps = -(-len(self.train_items) // settings.batch_size)
        cfg = self.cfg
        return "\n".join(
            [
                f"== {self.family.upper()} {self.name} | {cfg['model']['name']} | {method.describe()} | "
                f"preset {cfg['preset']['name']} | seed {cfg['seed']}",
                f"   trainable {counts.trainable:,} (+ head {counts.head_trainable:,}) of {counts.total:,} "
                f"({100 * counts.trainable_fraction:.3f}%)",
                f"   {len(self.train_items):,} training items; global batch {settings.batch_size} = {per_device}"
                f"/device x {world} device(s) x {accumulation} accumulation; {steps} steps/epoch x "
                f"{settings.epochs} epochs; lr {settings.lr:g}",
                f"   run dir {run_dir}",
            ]
        )
