"""The shared training loop's pieces: batch order, sharding, schedule, and exact frozen-weight storage."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

import lora
from experiments.distributed import DistContext
from experiments.training import epoch_batches, micro_batches, store_frozen_matmul_weights


def test_epoch_batches_are_a_seeded_permutation() -> None:
    batches = epoch_batches(10, 4, seed=1, epoch=0)
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(i for b in batches for i in b) == list(range(10))
    assert batches == epoch_batches(10, 4, seed=1, epoch=0)
    assert batches != epoch_batches(10, 4, seed=1, epoch=1)


@pytest.mark.parametrize("world", [1, 2, 3])
def test_micro_batches_cover_the_global_batch_once_with_equal_counts(world: int) -> None:
    global_batch = list(range(7))
    shards = [micro_batches(global_batch, DistContext(r, world, r, torch.device("cpu")), 2) for r in range(world)]
    assert len({len(s) for s in shards}) == 1  # every rank joins the same number of all-reduces
    assert sorted(i for s in shards for micro in s for i in micro) == global_batch


def test_frozen_weights_in_bf16_give_bit_identical_autocast_outputs_and_gradients() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.LayerNorm(32), nn.Linear(32, 8))
    lora.inject_lora(model, ["0", "2"], r=4, lora_alpha=8)
    for _, layer in lora.named_lora_layers(model):
        nn.init.normal_(layer.lora_B)
    lora.mark_only_lora_as_trainable(model)
    converted = copy.deepcopy(model)
    assert store_frozen_matmul_weights(converted, torch.bfloat16) == 2
    assert converted[0].weight.dtype == torch.bfloat16 and converted[1].weight.dtype == torch.float32  # norm kept
    assert converted[0].lora_A.dtype == torch.float32  # trainable stays fp32
    x = torch.randn(5, 16)
    outputs, grads = [], []
    for m in (model, converted):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = m(x)
        out.float().sum().backward()
        outputs.append(out)
        grads.append([p.grad.clone() for p in m.parameters() if p.requires_grad])
    assert torch.equal(outputs[0], outputs[1])
    assert all(torch.equal(a, b) for a, b in zip(*grads, strict=True))
