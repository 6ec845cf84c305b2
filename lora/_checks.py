"""Validation of LoRA hyperparameters, with messages that name the bad value and the allowed range."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

from lora.errors import LoRAConfigError

BIAS_MODES = ("none", "all", "lora_only")


def check_rank(r: object) -> int:
    """Return ``r`` if it is a non-negative integer (0 disables LoRA)."""
    if isinstance(r, bool) or not isinstance(r, numbers.Integral) or r < 0:
        raise LoRAConfigError(f"r must be a non-negative integer (0 disables LoRA), got {r!r}")
    return int(r)


def check_alpha(lora_alpha: object) -> float:
    """Return ``lora_alpha`` if it is a positive, finite real number."""
    if isinstance(lora_alpha, bool) or not isinstance(lora_alpha, numbers.Real) or not 0 < lora_alpha < math.inf:
        raise LoRAConfigError(f"lora_alpha must be a finite number > 0, got {lora_alpha!r}")
    return lora_alpha


def check_dropout(lora_dropout: object) -> float:
    """Return ``lora_dropout`` if it is a probability in [0, 1)."""
    if isinstance(lora_dropout, bool) or not isinstance(lora_dropout, numbers.Real) or not 0.0 <= lora_dropout < 1.0:
        raise LoRAConfigError(f"lora_dropout must be in [0, 1), got {lora_dropout!r}")
    return float(lora_dropout)


def check_enable_lora(enable_lora: Sequence[bool], out_features: int) -> list[bool]:
    """Return ``enable_lora`` as a list if it splits ``out_features`` into equal slices."""
    flags = [bool(flag) for flag in enable_lora]
    if not flags:
        raise LoRAConfigError("enable_lora must list at least one slice, got an empty list")
    if out_features % len(flags) != 0:
        raise LoRAConfigError(
            f"out_features={out_features} is not divisible by len(enable_lora)={len(flags)}: "
            f"enable_lora needs one flag per equal slice of the output (e.g. 3 for a fused q/k/v)"
        )
    return flags


def check_bias_mode(bias: object) -> str:
    """Return ``bias`` if it is one of the loralib bias modes."""
    if bias not in BIAS_MODES:
        allowed = ", ".join(repr(mode) for mode in BIAS_MODES)
        raise LoRAConfigError(f"bias must be one of {allowed}; got {bias!r}")
    return bias  # type: ignore[return-value]
