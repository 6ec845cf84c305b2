"""A loralib-compatible LoRA library: layers, injection, merging, adapter files, PEFT export, accounting."""

from lora.accounting import ParameterCount, count_parameters
from lora.adapter import load_adapter, save_adapter
from lora.architectures import PAPER_MATRICES, detect_architecture
from lora.errors import AdapterMismatchError, LoRAConfigError, TargetNotFoundError, UnsupportedModuleError
from lora.inject import inject_lora, inject_lora_layer
from lora.layers import Conv1d, Conv2d, Conv3d, ConvLoRA, Embedding, Linear, LoRALayer, MergedLinear
from lora.merging import merge, merge_and_unload, unmerge
from lora.peft_export import export_peft
from lora.trainable import lora_state_dict, mark_only_lora_as_trainable, named_lora_layers, resolve_modules

__all__ = [
    "PAPER_MATRICES",
    "AdapterMismatchError",
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "ConvLoRA",
    "Embedding",
    "Linear",
    "LoRAConfigError",
    "LoRALayer",
    "MergedLinear",
    "ParameterCount",
    "TargetNotFoundError",
    "UnsupportedModuleError",
    "count_parameters",
    "detect_architecture",
    "export_peft",
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
