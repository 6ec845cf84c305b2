"""Validation of the layer-structure arguments that are not part of :class:`lora.LoRAConfig`.

The hyperparameters' ranges are checked in one place, ``LoRAConfig.__post_init__``.
"""

from __future__ import annotations

from collections.abc import Sequence

from lora.errors import LoRAConfigError

BIAS_MODES = ("none", "all", "lora_only")


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
