"""Error types users can catch; each is also a ``ValueError`` so generic handlers keep working."""

from __future__ import annotations


class LoRAConfigError(ValueError):
    """A LoRA hyperparameter (r, lora_alpha, lora_dropout, enable_lora, bias mode) is out of range."""


class TargetNotFoundError(ValueError):
    """Injection targets matched no module of the model."""


class UnsupportedModuleError(ValueError):
    """A target matched a module type that has no LoRA counterpart."""


class AdapterMismatchError(ValueError):
    """An adapter file does not fit the model it is loaded into (keys, shapes or base architecture)."""
