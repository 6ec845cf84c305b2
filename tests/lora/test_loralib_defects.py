"""loralib 0.1.2's known defects, each checked on both libraries: present in loralib, fixed in ours.

Every check is a function of the library module, so the same assertion that passes on ``lora`` is
shown to fail on ``loralib``: the tests cannot pass vacuously.
"""

from __future__ import annotations

import io
import math
import pickle
import re
import types

import loralib
import pytest
import torch
import torch.nn as nn

import lora


def _conv_works(lib: types.ModuleType, cls_name: str, kernel, kwargs: dict, shape: tuple[int, ...]) -> bool:
    """Build, run, and compare merged with unmerged outputs; False on any failure."""
    try:
        torch.manual_seed(0)
        layer = getattr(lib, cls_name)(4, 8, kernel, r=2, lora_alpha=2, **kwargs)
        nn.init.normal_(layer.lora_B)
        x = torch.randn(shape)
        unmerged = layer(x)
        layer.eval()
        return torch.allclose(layer(x), unmerged, atol=1e-5)
    except Exception:
        return False


CONV_CASES = [
    ("Conv1d", 3, {}, (2, 4, 11)),
    ("Conv3d", 3, {"padding": 1}, (1, 4, 4, 5, 6)),
    ("Conv2d", (3, 5), {}, (1, 4, 8, 9)),
    ("Conv2d", 3, {"groups": 2, "stride": 2, "dilation": 2}, (1, 4, 11, 11)),
]


@pytest.mark.parametrize(("cls_name", "kernel", "kwargs", "shape"), CONV_CASES)
def test_defect1_conv_any_kernel_groups_stride_dilation(cls_name, kernel, kwargs, shape) -> None:
    assert _conv_works(lora, cls_name, kernel, kwargs, shape)
    if cls_name != "Conv2d" or isinstance(kernel, tuple):
        assert not _conv_works(loralib, cls_name, kernel, kwargs, shape)


def _merged_linear_without_slices_runs(lib: types.ModuleType) -> bool:
    """r > 0 with every slice disabled must act as the plain linear layer."""
    layer = lib.MergedLinear(8, 12, r=4, lora_alpha=4, enable_lora=[False, False, False])
    x = torch.randn(2, 8)
    try:
        out = layer(x)
    except AttributeError:
        return False
    return torch.allclose(out, torch.nn.functional.linear(x, layer.weight, layer.bias))


def test_defect2_merged_linear_with_no_enabled_slice() -> None:
    assert _merged_linear_without_slices_runs(lora)
    assert not _merged_linear_without_slices_runs(loralib)


def _whole_model_pickles(lib: types.ModuleType) -> bool:
    model = nn.Sequential(lib.Linear(4, 4, r=2), lib.Embedding(5, 4, r=2))
    try:
        torch.save(model, io.BytesIO())
        pickle.dumps(model)
    except (pickle.PicklingError, AttributeError, TypeError):
        return False
    return True


def test_defect3_whole_model_saves_and_pickles() -> None:
    assert _whole_model_pickles(lora)
    assert not _whole_model_pickles(loralib)
    restored = pickle.loads(pickle.dumps(lora.Linear(4, 4, r=2, lora_dropout=0.0)))
    assert isinstance(restored.lora_dropout, nn.Identity)


def _eval_state_dict_round_trips(lib: types.ModuleType) -> bool:
    """Save in eval mode, load into a fresh model, eval: outputs must equal the original model's."""
    torch.manual_seed(0)
    model = lib.Linear(8, 8, r=2, lora_alpha=4)
    nn.init.normal_(model.lora_B)
    model.eval()
    x = torch.randn(3, 8)
    expected = model(x)
    state = model.state_dict()
    fresh = lib.Linear(8, 8, r=2, lora_alpha=4)
    fresh.load_state_dict(state)
    fresh.eval()
    return torch.allclose(fresh(x), expected, atol=1e-6)


def test_defect4_state_dict_in_eval_mode_holds_unmerged_weights() -> None:
    assert _eval_state_dict_round_trips(lora)
    assert not _eval_state_dict_round_trips(loralib)


def test_defect4_loading_into_a_merged_model_refreshes_the_merge() -> None:
    torch.manual_seed(0)
    source = lora.Linear(8, 8, r=2, lora_alpha=4)
    nn.init.normal_(source.lora_B)
    target = lora.Linear(8, 8, r=2, lora_alpha=4).eval()  # merged with B = 0
    target.load_state_dict(source.state_dict())
    x = torch.randn(3, 8)
    torch.testing.assert_close(target(x), source(x), rtol=1e-6, atol=1e-6)


def _toggles_keep_weight_exact(lib: types.ModuleType, dtype: torch.dtype) -> bool:
    torch.manual_seed(0)
    layer = lib.Linear(64, 64, r=8, lora_alpha=16).to(dtype)
    nn.init.normal_(layer.lora_B, std=0.5)
    original = layer.weight.detach().clone()
    for _ in range(20):
        layer.eval()
        layer.train()
    return torch.equal(layer.weight, original)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_defect5_train_eval_toggles_keep_frozen_weight_bit_identical(dtype: torch.dtype) -> None:
    assert _toggles_keep_weight_exact(lora, dtype)
    assert not _toggles_keep_weight_exact(loralib, dtype)


BAD_VALUES = [
    (lambda lib: lib.Linear(4, 4, r=-1), r"r must be a non-negative integer \(0 disables LoRA\), got -1"),
    (lambda lib: lib.Linear(4, 4, r=2.5), r"r must be a non-negative integer .* got 2\.5"),
    (lambda lib: lib.Linear(4, 4, r=2, lora_alpha=0), r"lora_alpha must be a finite number > 0, got 0"),
    (lambda lib: lib.Linear(4, 4, r=2, lora_alpha=-8), r"lora_alpha must be a finite number > 0, got -8"),
    (
        lambda lib: lib.Linear(4, 4, r=2, lora_alpha=math.inf),
        r"lora_alpha must be a finite number > 0, got inf",
    ),
    (lambda lib: lib.Linear(4, 4, r=2, lora_dropout=1.0), r"lora_dropout must be in \[0, 1\), got 1\.0"),
    (lambda lib: lib.Linear(4, 4, r=2, lora_dropout=-0.1), r"lora_dropout must be in \[0, 1\), got -0\.1"),
    (
        lambda lib: lib.MergedLinear(4, 10, r=2, enable_lora=[True, False, True]),
        r"out_features=10 is not divisible by len\(enable_lora\)=3",
    ),
    (
        lambda lib: lib.mark_only_lora_as_trainable(nn.Linear(2, 2), bias="some"),
        r"bias must be one of 'none', 'all', 'lora_only'; got 'some'",
    ),
    (
        lambda lib: lib.lora_state_dict(nn.Linear(2, 2), bias="lora"),
        r"bias must be one of 'none', 'all', 'lora_only'; got 'lora'",
    ),
]


@pytest.mark.parametrize(("build", "message"), BAD_VALUES)
def test_defect6_bad_values_raise_value_error_naming_value_and_range(build, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build(lora)
    try:
        build(loralib)
    except Exception as error:
        assert not (isinstance(error, ValueError) and re.search(message, str(error)))
    with pytest.raises(lora.LoRAConfigError):
        build(lora)
