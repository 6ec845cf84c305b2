"""Whole-model merge, unmerge, and folding LoRA away into a plain model with zero added latency."""

from __future__ import annotations

import torch
import torch.nn as nn

from lora.layers import ConvLoRA, Embedding, Linear, LoRALayer, MergedLinear
from lora.trainable import named_lora_layers

__all__ = ["merge", "merge_and_unload", "unmerge"]


def merge(model: nn.Module) -> nn.Module:
    """Make every LoRA layer forward with ``W0 + dW`` (one matmul); ``weight`` keeps ``W0``."""
    for _, layer in named_lora_layers(model):
        layer.merge()
    return model


def unmerge(model: nn.Module) -> nn.Module:
    """Return every LoRA layer to the separate ``W0 x + B A x`` forward that trains A and B."""
    for _, layer in named_lora_layers(model):
        layer.unmerge()
    return model


def _plain_linear(layer: Linear | MergedLinear, weight: torch.Tensor) -> nn.Module:
    """A non-LoRA linear layer of the type that was adapted (GPT-2's ``Conv1D`` stays a ``Conv1D``)."""
    if layer.base_layer_type == "transformers.pytorch_utils.Conv1D":
        from transformers.pytorch_utils import Conv1D

        with torch.device("meta"):
            plain = Conv1D(layer.out_features, layer.in_features)
        plain.weight = nn.Parameter(weight, requires_grad=layer.weight.requires_grad)
        plain.bias = layer.bias
        return plain
    with torch.device("meta"):
        plain = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
    oriented = weight.transpose(0, 1).contiguous() if layer.fan_in_fan_out else weight
    plain.weight = nn.Parameter(oriented, requires_grad=layer.weight.requires_grad)
    plain.bias = layer.bias
    return plain


def _plain_module(layer: LoRALayer) -> nn.Module:
    """The wrapped layer's own type, carrying the merged weight."""
    weight = layer.merged_weight()
    if isinstance(layer, ConvLoRA):
        conv = layer.conv
        conv.weight = nn.Parameter(weight, requires_grad=conv.weight.requires_grad)
        return conv
    if isinstance(layer, Embedding):
        with torch.device("meta"):
            plain = nn.Embedding(
                layer.num_embeddings,
                layer.embedding_dim,
                padding_idx=layer.padding_idx,
                max_norm=layer.max_norm,
                norm_type=layer.norm_type,
                scale_grad_by_freq=layer.scale_grad_by_freq,
                sparse=layer.sparse,
            )
        plain.weight = nn.Parameter(weight, requires_grad=layer.weight.requires_grad)
        return plain
    if isinstance(layer, Linear | MergedLinear):
        return _plain_linear(layer, weight)
    raise TypeError(f"no plain counterpart known for {type(layer).__name__}")


def merge_and_unload(model: nn.Module) -> nn.Module:
    """Fold every LoRA update into its weight and replace the LoRA layers by plain ones, in place.

    The result has no LoRA modules, the pretrained model's state-dict keys and shapes, and the
    adapted model's outputs, so it serves with zero added inference latency. Returns ``model``;
    a bare LoRA layer passed in is returned as its plain counterpart. Its weights no longer match
    the base weight fingerprints of saved adapters, so :func:`lora.load_adapter` refuses to add the
    update a second time.
    """
    if isinstance(model, LoRALayer):
        return _plain_module(model).train(model.training)
    layers = list(named_lora_layers(model))
    for name, layer in layers:
        plain = _plain_module(layer).train(layer.training)
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, plain)
    return model
