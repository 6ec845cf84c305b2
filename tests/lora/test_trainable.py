"""Module resolution for saved modules agrees with what ``trainable_modules`` trains."""

from __future__ import annotations

import pytest
import torch.nn as nn

import lora


@pytest.mark.parametrize("entries", [["classifier"], ["out_proj"], ["layer.1.output", "classifier.dense"]])
def test_resolve_modules_selects_the_parameters_trainable_modules_trains(tiny_roberta, entries) -> None:
    lora.mark_only_lora_as_trainable(tiny_roberta, trainable_modules=entries)
    trained = {name for name, p in tiny_roberta.named_parameters() if p.requires_grad}
    modules = lora.resolve_modules(tiny_roberta, entries)
    under = {name for name, _ in tiny_roberta.named_parameters() if name.startswith(tuple(f"{m}." for m in modules))}
    assert under == trained and trained


def test_resolve_modules_keeps_outermost_and_refuses_unknown_names(tiny_roberta) -> None:
    assert lora.resolve_modules(tiny_roberta, ["classifier", "out_proj"]) == ["classifier"]
    with pytest.raises(lora.LoRAConfigError, match=r"module 'clasifier' matched no module .*classifier, roberta"):
        lora.resolve_modules(tiny_roberta, ["clasifier"])


def test_dropout_probability() -> None:
    assert lora.trainable.dropout_probability(lora.Linear(4, 4, r=2, lora_dropout=0.25)) == 0.25
    layer = lora.Linear(4, 4, r=2)
    assert isinstance(layer.lora_dropout, nn.Identity) and lora.trainable.dropout_probability(layer) == 0.0


@pytest.mark.parametrize("bias", ["none", "all", "lora_only"])
def test_every_parameter_that_trains_is_saved(bias: str) -> None:
    """Layers with r=0 or no enabled slice have no A/B, but "lora_only" still trains their bias."""
    model = nn.Sequential(
        lora.Linear(4, 4, r=2),
        lora.Linear(4, 4, r=0),
        lora.MergedLinear(4, 6, r=2, enable_lora=[False, False]),
        nn.LayerNorm(4),
    )
    lora.mark_only_lora_as_trainable(model, bias=bias)
    trained = {name for name, p in model.named_parameters() if p.requires_grad}
    saved = set(lora.lora_state_dict(model, bias=bias))
    assert trained == saved & {name for name, _ in model.named_parameters()}
    assert ("1.bias" in saved) == (bias != "none")
