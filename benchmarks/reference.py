"""An independent reference for fine-tuning: a plain loop over Hugging Face PEFT and torch, as a user writes it.

It shares nothing with ``experiments.training`` or ``experiments.methods``: PEFT injects LoRA and chooses
what trains (``task_type="SEQ_CLS"`` keeps the new classifier trainable and everything pretrained frozen),
the model computes its own loss, and the optimizer and schedule follow Hugging Face's Trainer (AdamW without
decay on biases and LayerNorm weights; linear warmup of ``ceil(ratio * steps)`` steps, then linear decay).
The trajectory test and ``benchmarks.parity`` hold our training loop to it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn as nn

__all__ = ["ReferenceSettings", "bitfit_reference", "full_ft_reference", "peft_lora_model", "train_reference"]


@dataclass(frozen=True)
class ReferenceSettings:
    """The optimisation settings a plain loop takes."""

    lr: float
    total_steps: int
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    max_grad_norm: float | None = None
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8


def peft_lora_model(
    model: nn.Module, r: int, lora_alpha: float, target_modules: Sequence[str], extra_modules: Sequence[str] = ()
) -> nn.Module:
    """PEFT's LoRA for sequence classification; ``extra_modules`` also train whole (e.g. ``["pooler"]``)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        task_type="SEQ_CLS",
        r=r,
        lora_alpha=lora_alpha,
        lora_dropout=0.0,
        target_modules=list(target_modules),
        modules_to_save=list(extra_modules) or None,
    )
    return get_peft_model(model, config)


def full_ft_reference(model: nn.Module) -> nn.Module:
    """Every parameter trains."""
    for param in model.parameters():
        param.requires_grad_(True)
    return model


def bitfit_reference(model: nn.Module, head_prefix: str = "classifier.") -> nn.Module:
    """Biases (LayerNorm's included) and the new head train; every other weight stays frozen."""
    for name, param in model.named_parameters():
        param.requires_grad_(name.endswith(".bias") or name.startswith(head_prefix))
    return model


def _no_decay(name: str) -> bool:
    return name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name or ".norm" in name


def train_reference(
    model: nn.Module,
    epochs: Iterable[Iterable[dict[str, torch.Tensor]]],
    settings: ReferenceSettings,
    device: torch.device | str = "cpu",
    autocast_dtype: torch.dtype | None = None,
    after_epoch: Callable[[nn.Module], None] | None = None,
) -> list[float]:
    """Train on each epoch's batches (each with ``labels``), one optimizer step each; return every step's loss.

    ``after_epoch`` sees the model at the end of every epoch (in train mode; it may switch modes).
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in named if not _no_decay(n)], "weight_decay": settings.weight_decay},
        {"params": [p for n, p in named if _no_decay(n)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(
        [g for g in groups if g["params"]], lr=settings.lr, betas=settings.betas, eps=settings.eps
    )
    from transformers import get_linear_schedule_with_warmup

    warmup = math.ceil(settings.warmup_ratio * settings.total_steps)
    scheduler = get_linear_schedule_with_warmup(optimizer, warmup, settings.total_steps)
    device = torch.device(device)
    autocast = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype else nullcontext()
    model.to(device).train()
    losses = []
    for batches in epochs:
        for batch in batches:
            with autocast:
                loss = model(**{k: v.to(device) for k, v in batch.items()}).loss
            loss.backward()
            if settings.max_grad_norm:
                torch.nn.utils.clip_grad_norm_([p for _, p in named], settings.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            losses.append(float(loss.detach()))
        if after_epoch is not None:
            after_epoch(model)
            model.train()
    return losses
