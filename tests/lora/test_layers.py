"""Every layer against the dense computation W0 x + (alpha / r) B A x, in all merge states."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import lora


def _randomise_lora(layer: nn.Module, seed: int = 0) -> None:
    """Give A and B non-zero values so the update is visible (B starts at zero)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in layer.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=gen, dtype=param.dtype) * 0.3)


def test_linear_matches_dense_math() -> None:
    torch.manual_seed(0)
    layer = lora.Linear(12, 7, r=3, lora_alpha=6)
    _randomise_lora(layer)
    x = torch.randn(4, 5, 12)
    dense = x @ layer.weight.T + layer.bias + (6 / 3) * x @ layer.lora_A.T @ layer.lora_B.T
    torch.testing.assert_close(layer(x), dense, rtol=1e-6, atol=1e-6)
    assert layer.scaling == 2.0


def test_linear_fan_in_fan_out_stores_transposed_weight() -> None:
    torch.manual_seed(0)
    layer = lora.Linear(12, 7, r=2, lora_alpha=4, fan_in_fan_out=True)
    _randomise_lora(layer)
    assert layer.weight.shape == (12, 7)
    x = torch.randn(3, 12)
    dense = x @ layer.weight + layer.bias + 2.0 * x @ layer.lora_A.T @ layer.lora_B.T
    torch.testing.assert_close(layer(x), dense, rtol=1e-6, atol=1e-6)


def test_rslora_scaling_uses_square_root_of_rank() -> None:
    layer = lora.Linear(8, 8, r=16, lora_alpha=8, use_rslora=True)
    assert layer.scaling == pytest.approx(8 / math.sqrt(16))


@pytest.mark.parametrize("fan_in_fan_out", [False, True])
@pytest.mark.parametrize("enable", [[True, False, True], [True, True, True], [False, True, False]])
def test_merged_linear_matches_dense_math(enable: list[bool], fan_in_fan_out: bool) -> None:
    torch.manual_seed(0)
    d_in, r, alpha = 10, 2, 8
    layer = lora.MergedLinear(d_in, 12, r=r, lora_alpha=alpha, enable_lora=enable, fan_in_fan_out=fan_in_fan_out)
    _randomise_lora(layer)
    x = torch.randn(3, 4, d_in)
    weight = layer.weight.T if fan_in_fan_out else layer.weight
    expected = x @ weight.T + layer.bias
    # Each enabled slice s of the 4-wide outputs gets its own rank-r pair, in order.
    enabled = [i for i, flag in enumerate(enable) if flag]
    for k, s in enumerate(enabled):
        a = layer.lora_A[k * r : (k + 1) * r]
        b = layer.lora_B[k * 4 : (k + 1) * 4]
        expected[..., s * 4 : (s + 1) * 4] += (alpha / r) * x @ a.T @ b.T
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-6)


def test_embedding_matches_dense_math() -> None:
    torch.manual_seed(0)
    layer = lora.Embedding(30, 6, r=4, lora_alpha=2, padding_idx=0)
    _randomise_lora(layer)
    ids = torch.randint(0, 30, (3, 7))
    table = layer.weight + 0.5 * (layer.lora_B @ layer.lora_A).T
    torch.testing.assert_close(layer(ids), table[ids], rtol=1e-6, atol=1e-6)


def test_embedding_initialisation_is_a_zero_b_normal() -> None:
    layer = lora.Embedding(1000, 64, r=8)
    assert torch.count_nonzero(layer.lora_A) == 0
    assert 0.9 < layer.lora_B.std().item() < 1.1


def test_linear_initialisation_is_a_kaiming_b_zero() -> None:
    layer = lora.Linear(256, 64, r=64)
    assert torch.count_nonzero(layer.lora_B) == 0
    bound = 1 / math.sqrt(256)  # kaiming_uniform with a=sqrt(5) on fan_in 256
    assert layer.lora_A.abs().max().item() <= bound
    assert layer.lora_A.abs().max().item() > 0.9 * bound


CONV_CASES = [
    (lora.Conv1d, nn.Conv1d, 5, {}, (2, 4, 17)),
    (lora.Conv1d, nn.Conv1d, 3, {"stride": 2, "padding": 1, "dilation": 2, "groups": 2}, (2, 4, 19)),
    (lora.Conv2d, nn.Conv2d, 3, {}, (2, 4, 9, 9)),
    (lora.Conv2d, nn.Conv2d, (3, 5), {"padding": (1, 2), "groups": 2}, (2, 4, 9, 11)),
    (lora.Conv2d, nn.Conv2d, (1, 3), {"stride": (2, 1), "dilation": (1, 2)}, (1, 4, 8, 10)),
    (lora.Conv3d, nn.Conv3d, 3, {"padding": 1}, (1, 4, 5, 6, 7)),
    (lora.Conv3d, nn.Conv3d, (1, 2, 3), {"groups": 4}, (1, 4, 5, 6, 7)),
]


@pytest.mark.parametrize(("cls", "ref_cls", "kernel", "kwargs", "shape"), CONV_CASES)
def test_conv_matches_dense_math_and_merges(cls, ref_cls, kernel, kwargs, shape) -> None:
    torch.manual_seed(0)
    layer = cls(4, 8, kernel, r=2, lora_alpha=4, **kwargs)
    _randomise_lora(layer)
    # The update, reshaped to the kernel, must be exactly (alpha/r) B A.
    delta = (2.0 * layer.lora_B @ layer.lora_A).view(layer.conv.weight.shape)
    reference = ref_cls(4, 8, kernel, **kwargs)
    with torch.no_grad():
        reference.weight.copy_(layer.conv.weight + delta)
        reference.bias.copy_(layer.conv.bias)
    x = torch.randn(shape)
    expected = reference(x)
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)
    layer.eval()
    assert layer.merged
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)


def test_conv_dropout_applies_to_the_lora_branch_only() -> None:
    torch.manual_seed(0)
    layer = lora.Conv2d(3, 4, 3, r=2, lora_alpha=2, lora_dropout=0.5)
    _randomise_lora(layer)
    x = torch.randn(2, 3, 6, 6)
    torch.manual_seed(1)
    out = layer(x)
    torch.manual_seed(1)
    mask_input = layer.lora_dropout(x)
    delta = (layer.lora_B @ layer.lora_A).view(layer.conv.weight.shape)
    expected = F.conv2d(x, layer.conv.weight, layer.conv.bias) + F.conv2d(mask_input, delta)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def _layers() -> list[tuple[nn.Module, torch.Tensor]]:
    torch.manual_seed(0)
    return [
        (lora.Linear(16, 8, r=4, lora_alpha=8), torch.randn(3, 16)),
        (lora.Linear(16, 8, r=4, lora_alpha=8, fan_in_fan_out=True), torch.randn(3, 16)),
        (lora.MergedLinear(16, 12, r=2, lora_alpha=4, enable_lora=[True, False, True]), torch.randn(3, 16)),
        (lora.Embedding(20, 8, r=4, lora_alpha=4), torch.randint(0, 20, (3, 5))),
        (lora.Conv2d(3, 6, 3, r=2, lora_alpha=2), torch.randn(2, 3, 7, 7)),
    ]


@pytest.mark.parametrize("index", range(5))
def test_merged_equals_unmerged_in_every_state(index: int) -> None:
    layer, x = _layers()[index]
    _randomise_lora(layer)
    layer.eval()  # auto-merge
    merged_out = layer(x)
    layer.unmerge()
    unmerged_out = layer(x)
    lora.merge(layer)
    explicit_merged = layer(x)
    plain = lora.merge_and_unload(layer)
    assert not isinstance(plain, lora.LoRALayer)
    torch.testing.assert_close(merged_out, unmerged_out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(explicit_merged, unmerged_out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(plain(x), unmerged_out, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("index", range(5))
def test_gradients_reach_only_lora_parameters(index: int) -> None:
    layer, x = _layers()[index]
    _randomise_lora(layer)
    lora.mark_only_lora_as_trainable(layer)
    layer(x).float().pow(2).sum().backward()
    for name, param in layer.named_parameters():
        if "lora_" in name:
            assert param.grad is not None and param.grad.abs().sum() > 0, name
        else:
            assert not param.requires_grad and param.grad is None, name


def test_merged_cache_follows_in_place_updates_of_lora() -> None:
    torch.manual_seed(0)
    layer = lora.Linear(6, 6, r=2, lora_alpha=2).eval()
    x = torch.randn(2, 6)
    before = layer(x)
    _randomise_lora(layer, seed=3)  # in place, while merged
    after = layer(x)
    assert not torch.allclose(before, after)
    layer.unmerge()
    torch.testing.assert_close(after, layer(x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_forward_within_tolerance(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    layer = lora.Linear(64, 32, r=8, lora_alpha=16)
    _randomise_lora(layer)
    x = torch.randn(4, 64)
    reference = layer(x)
    low = layer.to(dtype)
    torch.testing.assert_close(low(x.to(dtype)).float(), reference, rtol=3e-2, atol=6e-2)
    low.eval()
    torch.testing.assert_close(low(x.to(dtype)).float(), reference, rtol=3e-2, atol=6e-2)


def test_bf16_autocast_with_fp32_parameters() -> None:
    torch.manual_seed(0)
    layer = lora.MergedLinear(32, 48, r=4, lora_alpha=8, enable_lora=[True, False, True], fan_in_fan_out=True)
    _randomise_lora(layer)
    x = torch.randn(5, 32)
    reference = layer(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), reference, rtol=3e-2, atol=6e-2)


def test_rank_zero_is_the_plain_layer() -> None:
    torch.manual_seed(0)
    layer = lora.Linear(5, 3, r=0)
    assert not layer.has_lora and "lora_A" not in dict(layer.named_parameters())
    assert layer.weight.requires_grad
    x = torch.randn(2, 5)
    torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias))
    layer.eval()
    torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias))
