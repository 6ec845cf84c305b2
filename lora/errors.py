"""Error types users can catch; each is also a ``ValueError`` so generic handlers keep working."""

from __future__ import annotations


class LoRAConfigError(ValueError):
    """A LoRA setting (a ``LoRAConfig`` field, enable_lora, bias mode) is out of range or unsupported where used."""


class TargetNotFoundError(ValueError):
    """Injection targets matched no module of the model."""


class UnsupportedModuleError(ValueError):
    """A target matched a module type that has no LoRA counterpart."""


class AdapterMismatchError(ValueError):
    """An adapter file does not fit the model it is loaded into (keys, shapes or base architecture)."""


class AdapterIntegrityError(AdapterMismatchError):
    """An adapter's files changed after saving (an edited config, other tensor bytes) or hold NaN/inf."""


class BaseWeightsMismatchError(AdapterMismatchError):
    """The weights an adapter would adapt are not the ones it was trained on (e.g. they already hold a merged ΔW)."""
