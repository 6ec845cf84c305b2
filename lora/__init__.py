"""A loralib-compatible LoRA library: layers, injection, merging, adapter files, PEFT export, accounting.

Hyperparameters and variants (rsLoRA, DoRA, PiSSA and Gaussian inits) are one :class:`LoRAConfig`.
"""

from lora.accounting import ParameterCount, count_parameters
from lora.adapter import load_adapter, save_adapter
from lora.architectures import PAPER_MATRICES, detect_architecture
from lora.config import LoRAConfig
from lora.errors import (
    AdapterIntegrityError,
    AdapterMismatchError,
    BaseWeightsMismatchError,
    LoRAConfigError,
    TargetNotFoundError,
    UnsupportedModuleError,
)
from lora.inject import inject_lora, inject_lora_layer
from lora.layers import Conv1d, Conv2d, Conv3d, ConvLoRA, Embedding, Linear, LoRALayer, MergedLinear
from lora.merging import merge, merge_and_unload, unmerge
from lora.peft_export import export_peft
from lora.trainable import in_modules, lora_state_dict, mark_only_lora_as_trainable, named_lora_layers, resolve_modules

__all__ = [
    "PAPER_MATRICES",
    "AdapterIntegrityError",
    "AdapterMismatchError",
    "BaseWeightsMismatchError",
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "ConvLoRA",
    "Embedding",
    "Linear",
    "LoRAConfig",
    "LoRAConfigError",
    "LoRALayer",
    "MergedLinear",
    "ParameterCount",
    "TargetNotFoundError",
    "UnsupportedModuleError",
    "count_parameters",
    "detect_architecture",
    "export_peft",
    "in_modules",
    "inject_lora",
    "inject_lora_layer",
    "load_adapter",
    "lora_state_dict",
    "mark_only_lora_as_trainable",
    "merge",
    "merge_and_unload",
    "named_lora_layers",
    "resolve_modules",
    "save_adapter",
    "unmerge",
]
