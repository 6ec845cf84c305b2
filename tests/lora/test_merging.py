"""Whole-model merge/unmerge and folding LoRA into a plain model: same outputs in every state."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from transformers.pytorch_utils import Conv1D

import lora


def _randomise_lora(model: nn.Module) -> None:
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.1)


@pytest.mark.parametrize(
    ("fixture", "targets"),
    [
        ("tiny_roberta", ["Wq", "Wk", "Wv", "Wo", "FFN"]),
        ("tiny_gpt2", ["Wq", "Wv", "Wo", "FFN"]),
        ("tiny_llama", ["Wq", "Wk", "Wv", "Wo", "FFN"]),
    ],
)
def test_base_merged_unmerged_and_unloaded_agree(fixture: str, targets: list[str], request) -> None:
    model = request.getfixturevalue(fixture)
    original_shapes = {k: v.shape for k, v in model.state_dict().items()}
    ids = torch.randint(3, 120, (2, 7), generator=torch.Generator().manual_seed(0))
    lora.inject_lora(model, targets, r=2, lora_alpha=4)
    _randomise_lora(model)
    model.train()  # unmerged (dropout is off in these configs only in eval, so compare in eval)
    model.eval()
    merged = model(input_ids=ids).logits
    lora.unmerge(model)
    unmerged = model(input_ids=ids).logits
    lora.merge(model)
    remerged = model(input_ids=ids).logits
    folded = lora.merge_and_unload(model)
    assert not list(lora.named_lora_layers(folded))
    plain = folded(input_ids=ids).logits
    torch.testing.assert_close(merged, unmerged, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(remerged, unmerged, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(plain, unmerged, rtol=1e-5, atol=1e-5)
    assert {k: v.shape for k, v in folded.state_dict().items()} == original_shapes


def test_unloaded_gpt2_keeps_conv1d_layout(tiny_gpt2) -> None:
    lora.inject_lora(tiny_gpt2, ["Wq", "Wv"], r=2)
    _randomise_lora(tiny_gpt2)
    layer = tiny_gpt2.transformer.h[0].attn.c_attn
    expected = layer.weight + layer.delta_weight()
    lora.merge_and_unload(tiny_gpt2)
    plain = tiny_gpt2.transformer.h[0].attn.c_attn
    assert type(plain) is Conv1D
    torch.testing.assert_close(plain.weight, expected)


def test_merge_does_not_touch_the_frozen_weight() -> None:
    layer = lora.Linear(8, 8, r=2, lora_alpha=2)
    nn.init.normal_(layer.lora_B)
    before = layer.weight.detach().clone()
    lora.merge(layer)
    assert layer.merged and torch.equal(layer.weight, before)
    lora.unmerge(layer)
    assert not layer.merged


def test_merge_moves_with_the_module() -> None:
    layer = lora.Linear(8, 8, r=2, lora_alpha=2).eval()
    layer.to(torch.float64)
    assert layer._merged_weight.dtype == torch.float64
    assert layer(torch.randn(2, 8, dtype=torch.float64)).dtype == torch.float64
