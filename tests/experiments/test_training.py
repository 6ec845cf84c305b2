"""The shared training loop's pieces: batch order, sharding, schedule, and exact frozen-weight storage."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

import lora
from experiments.distributed import DistContext
from experiments.training import (
    epoch_batches,
    micro_batches,
    seed_step_generators,
    store_frozen_matmul_params,
    to_device,
)

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")),
]


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


@pytest.mark.parametrize("device", DEVICES)
def test_the_step_seed_draws_what_torch_manual_seed_draws(device: str) -> None:
    """Dropout after the per-step reseed matches torch.manual_seed's, so runs and resumes keep their masks."""
    where = torch.device(device)
    torch.manual_seed(2024)
    expected = (torch.rand(8), torch.rand(8, device=where), nn.functional.dropout(torch.ones(64, device=where)))
    torch.manual_seed(7)
    seed_step_generators(2024, where)
    drawn = (torch.rand(8), torch.rand(8, device=where), nn.functional.dropout(torch.ones(64, device=where)))
    assert all(torch.equal(a, b) for a, b in zip(drawn, expected, strict=True))
    seed_step_generators(2025, where)
    assert not torch.equal(torch.rand(8), expected[0])


@pytest.mark.parametrize("device", DEVICES)
def test_batches_reach_the_device_unchanged(device: str) -> None:
    batch = {"input_ids": torch.arange(12).view(3, 4), "labels": torch.tensor([0.5, -1.0, 2.0])}
    moved = to_device(batch, torch.device(device))
    assert all(value.device.type == device for value in moved.values())
    for key, value in batch.items():
        assert torch.equal(moved[key].cpu(), value) and moved[key].dtype == value.dtype


def test_host_batches_bound_for_a_gpu_are_pinned_and_copied_asynchronously(monkeypatch: pytest.MonkeyPatch) -> None:
    """The GPU path's calls, recorded on CPU: pin each host tensor not yet pinned, then copy without blocking."""
    calls: list[tuple] = []
    monkeypatch.setattr(torch.Tensor, "is_pinned", lambda self: self.dtype == torch.float32)  # labels: pinned
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self: calls.append(("pin", self.dtype)) or self)
    monkeypatch.setattr(torch.Tensor, "to", lambda self, *a, **k: calls.append(("to", *a, k)) or self)
    batch = {"input_ids": torch.arange(4), "labels": torch.ones(4)}
    moved = to_device(batch, "cuda:0")
    assert moved.keys() == batch.keys()
    cuda = torch.device("cuda:0")
    assert calls == [
        ("pin", torch.int64),
        ("to", cuda, {"non_blocking": True}),
        ("to", cuda, {"non_blocking": True}),  # already pinned: copied as it is
    ]


def test_frozen_weights_in_bf16_give_bit_identical_autocast_outputs_and_gradients() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.LayerNorm(32), nn.Linear(32, 8))
    lora.inject_lora(model, ["0", "2"], r=4, lora_alpha=8)
    for _, layer in lora.named_lora_layers(model):
        nn.init.normal_(layer.lora_B)
    lora.mark_only_lora_as_trainable(model)
    converted = copy.deepcopy(model)
    assert store_frozen_matmul_params(converted, torch.bfloat16) == 4  # two weights, two biases
    assert converted[0].weight.dtype == converted[0].bias.dtype == torch.bfloat16
    assert converted[1].weight.dtype == torch.float32  # the norm keeps fp32
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


def test_compile_mode_auto_is_eager_and_compiling_is_opt_in() -> None:
    from experiments.training import TrainSettings

    auto = TrainSettings(lr=1.0, epochs=1, batch_size=1)
    assert auto.compile_mode() is None
    assert TrainSettings(lr=1.0, epochs=1, batch_size=1, compile=True).compile_mode() == "default"
    assert TrainSettings(lr=1.0, epochs=1, batch_size=1, compile=False).compile_mode() is None
    forced = TrainSettings(lr=1.0, epochs=1, batch_size=1, compile="reduce-overhead")
    assert forced.compile_mode() == "reduce-overhead"


def test_compiled_training_follows_the_eager_trajectory(tmp_path) -> None:
    from experiments.training import TrainSettings, fit

    def run(compile_setting: bool) -> tuple[list[dict], torch.Tensor]:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 1))
        lora.inject_lora(model, ["0", "2"], r=2, lora_alpha=4)
        lora.mark_only_lora_as_trainable(model, bias="all")
        data = [(torch.randn(6, generator=torch.Generator().manual_seed(i)), float(i % 3)) for i in range(24)]

        def collate(items):
            return {"x": torch.stack([x for x, _ in items]), "y": torch.tensor([y for _, y in items])}

        def loss_sum(m, batch):
            return ((m(batch["x"]).squeeze(-1) - batch["y"]) ** 2).sum()

        settings = TrainSettings(lr=1e-2, epochs=2, batch_size=8, compile=compile_setting, checkpoint_every_steps=0)
        outcome = fit(
            model,
            data,
            collate,
            loss_sum,
            lambda m, e: {},
            settings,
            tmp_path / str(compile_setting),
            DistContext(0, 1, 0, torch.device("cpu")),
            fingerprint="t",
            param_groups=[{"params": [p for p in model.parameters() if p.requires_grad], "lr": 1e-2}],
        )
        return outcome.history, model[0].lora_B.detach().clone()

    eager_history, eager_b = run(False)
    compiled_history, compiled_b = run(True)
    for eager, compiled in zip(eager_history, compiled_history, strict=True):
        assert compiled["train_loss"] == pytest.approx(eager["train_loss"], rel=1e-5)
    torch.testing.assert_close(compiled_b, eager_b, rtol=1e-5, atol=1e-6)
