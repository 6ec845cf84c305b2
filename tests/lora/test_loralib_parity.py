"""Drop-in compatibility with the real loralib 0.1.2: same keys, same initialisation, same outputs."""

from __future__ import annotations

import types

import loralib
import pytest
import torch
import torch.nn as nn

import lora


class Net(nn.Module):
    """A small model using every loralib layer in the configurations loralib itself supports."""

    def __init__(self, lib: types.ModuleType, dropout: float = 0.0) -> None:
        super().__init__()
        self.emb = lib.Embedding(40, 16, r=4, lora_alpha=8)
        self.q = lib.Linear(16, 16, r=4, lora_alpha=8, lora_dropout=dropout)
        self.qkv = lib.MergedLinear(
            16,
            48,
            r=2,
            lora_alpha=4,
            lora_dropout=dropout,
            enable_lora=[True, False, True],
            fan_in_fan_out=True,
        )
        self.proj = lib.Linear(48, 16, r=2, lora_alpha=2, fan_in_fan_out=True)
        self.conv2 = lib.Conv2d(1, 2, 3, r=2, lora_alpha=2, padding=1)
        self.conv1 = lib.Conv1d(16, 16, 1, r=2, lora_alpha=4)
        self.conv3 = lib.Conv3d(2, 2, 1, r=1, lora_alpha=1)
        self.head = nn.Linear(16, 3)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.proj(self.qkv(self.q(self.emb(ids))))  # (B, T, 16)
        h = self.conv1(h.transpose(1, 2)).transpose(1, 2)
        img = self.conv2(h.unsqueeze(1))  # (B, 2, T, 16)
        img = self.conv3(img.unsqueeze(2)).squeeze(2)
        return self.head(img.mean(1))


def _trained_like(model: nn.Module, seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.2)
    return model


def test_same_state_dict_keys_shapes_and_initialisation() -> None:
    torch.manual_seed(7)
    theirs = Net(loralib)
    torch.manual_seed(7)
    ours = Net(lora)
    theirs_sd, ours_sd = theirs.state_dict(), ours.state_dict()
    assert list(theirs_sd) == list(ours_sd)
    for key, value in theirs_sd.items():
        assert ours_sd[key].shape == value.shape, key
        assert torch.equal(ours_sd[key], value), f"{key}: initialisation differs from loralib"


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_loralib_checkpoint_loads_strictly_and_gives_identical_outputs(mode: str) -> None:
    torch.manual_seed(0)
    theirs = _trained_like(Net(loralib, dropout=0.1))
    state = {k: v.clone() for k, v in theirs.state_dict().items()}  # saved in train mode
    ours = Net(lora, dropout=0.1)
    ours.load_state_dict(state, strict=True)
    ids = torch.randint(0, 40, (2, 6))
    getattr(theirs, mode)()
    getattr(ours, mode)()
    torch.manual_seed(123)
    expected = theirs(ids)
    torch.manual_seed(123)
    actual = ours(ids)
    torch.testing.assert_close(actual, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("bias", ["none", "all", "lora_only"])
def test_trainable_marking_and_lora_state_dict_match_loralib(bias: str) -> None:
    theirs, ours = Net(loralib), Net(lora)
    loralib.mark_only_lora_as_trainable(theirs, bias=bias)
    lora.mark_only_lora_as_trainable(ours, bias=bias)
    flags_theirs = {n: p.requires_grad for n, p in theirs.named_parameters()}
    flags_ours = {n: p.requires_grad for n, p in ours.named_parameters()}
    # loralib's "lora_only" misses conv biases (ConvLoRA has no .bias); ours includes them.
    conv_biases = {"conv1.conv.bias", "conv2.conv.bias", "conv3.conv.bias"}
    if bias == "lora_only":
        assert all(flags_ours[name] for name in conv_biases)
        assert not any(flags_theirs[name] for name in conv_biases)
        flags_ours = {n: f for n, f in flags_ours.items() if n not in conv_biases}
        flags_theirs = {n: f for n, f in flags_theirs.items() if n not in conv_biases}
    assert flags_ours == flags_theirs
    keys_theirs = set(loralib.lora_state_dict(theirs, bias=bias))
    keys_ours = set(lora.lora_state_dict(ours, bias=bias))
    if bias == "lora_only":
        assert conv_biases <= keys_ours
        keys_ours -= conv_biases
    assert keys_ours == keys_theirs


def test_loralib_lora_state_dict_loads_into_our_model() -> None:
    torch.manual_seed(0)
    theirs = _trained_like(Net(loralib))
    torch.manual_seed(0)
    ours = Net(lora)  # same base weights by the same seed
    missing, unexpected = ours.load_state_dict(loralib.lora_state_dict(theirs), strict=False)
    assert not unexpected and all("lora_" not in key for key in missing)
    ids = torch.randint(0, 40, (2, 6))
    torch.testing.assert_close(ours.eval()(ids), theirs.eval()(ids), rtol=1e-6, atol=1e-6)
