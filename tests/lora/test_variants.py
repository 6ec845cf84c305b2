"""LoRA's successors (DoRA, PiSSA, rsLoRA, Gaussian init) against the real ``peft`` package on a tiny model.

Each variant is built by both libraries on copies of one base model; after copying identical adapter
tensors into both, outputs and the gradients of A, B and DoRA's magnitude must agree. Then merging,
adapter files and the PEFT export must keep the outputs.
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file
from transformers.pytorch_utils import Conv1D

import lora

TARGETS = ["up", "proj", "down"]
TOL = {"rtol": 1e-5, "atol": 1e-6}


class _Tiny(nn.Module):
    """nn.Linear layers and a GPT-2 ``Conv1D`` (weight stored (in, out): fan_in_fan_out)."""

    def __init__(self) -> None:
        super().__init__()
        self.up = nn.Linear(6, 10)
        self.proj = Conv1D(7, 10)
        self.down = nn.Linear(7, 5, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(torch.tanh(self.proj(torch.tanh(self.up(x)))))


def _base() -> _Tiny:
    torch.manual_seed(0)
    model = _Tiny()
    with torch.no_grad():
        model.proj.weight.normal_(0, 0.3)
        model.proj.bias.normal_(0, 0.1)
    return model


X = torch.randn(4, 3, 6, generator=torch.Generator().manual_seed(1))
WEIGHTS = torch.randn(4, 3, 5, generator=torch.Generator().manual_seed(2))


def _pair(config: lora.LoRAConfig, **peft_options) -> tuple[nn.Module, PeftModel]:
    """Our adapted model and PEFT's, from copies of the same base."""
    ours = _base()
    lora.inject_lora(ours, TARGETS, config=config)
    peft_config = LoraConfig(
        r=config.r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        use_rslora=config.use_rslora,
        use_dora=config.use_dora,
        target_modules=TARGETS,
        **peft_options,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PEFT notes that it sets fan_in_fan_out for Conv1D itself
        theirs = get_peft_model(_base(), peft_config)
    return ours, theirs


def _peft_key(name: str) -> str:
    """Our parameter name -> PEFT's (``up.lora_A`` -> ``base_model.model.up.lora_A.default.weight``)."""
    module, _, param = name.rpartition(".")
    return f"base_model.model.{module}.{param}.default.weight"


def _adapter_params(model: nn.Module) -> dict[str, nn.Parameter]:
    return {name: p for name, p in model.named_parameters() if name.rpartition(".")[2].startswith("lora_")}


def _train_like(ours: nn.Module, theirs: PeftModel, seed: int = 0) -> None:
    """Random adapter tensors (magnitudes perturbed), copied into both models."""
    gen = torch.Generator().manual_seed(seed)
    peft_params = dict(theirs.named_parameters())
    with torch.no_grad():
        for name, param in _adapter_params(ours).items():
            if name.endswith("lora_magnitude_vector"):
                param.mul_(1 + 0.2 * torch.rand(param.shape, generator=gen))
            else:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.3)
            peft_params[_peft_key(name)].copy_(param)


def _loss(model: nn.Module) -> torch.Tensor:
    return (model(X) * WEIGHTS).sum()


def _assert_same_outputs_and_gradients(ours: nn.Module, theirs: PeftModel, seed: int = 3) -> None:
    torch.manual_seed(seed)
    ours_out = ours(X)
    torch.manual_seed(seed)
    theirs_out = theirs(X)
    torch.testing.assert_close(ours_out, theirs_out, **TOL)
    (ours_out * WEIGHTS).sum().backward()
    (theirs_out * WEIGHTS).sum().backward()
    peft_params = dict(theirs.named_parameters())
    ours_params = _adapter_params(ours)
    assert {_peft_key(name) for name in ours_params} == {n for n, p in peft_params.items() if p.requires_grad}
    for name, param in ours_params.items():
        torch.testing.assert_close(param.grad, peft_params[_peft_key(name)].grad, **TOL, msg=name)


def _outputs(model: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(X)


def _assert_merging_keeps_outputs(model: nn.Module) -> None:
    model.eval()
    expected = _outputs(lora.unmerge(model))
    torch.testing.assert_close(_outputs(lora.merge(model)), expected, **TOL)
    torch.testing.assert_close(_outputs(lora.unmerge(model)), expected, rtol=0, atol=0)  # W never changed
    plain = lora.merge_and_unload(copy.deepcopy(model))
    assert not list(lora.named_lora_layers(plain)) and isinstance(plain.proj, Conv1D)
    torch.testing.assert_close(_outputs(plain), expected, **TOL)


def _assert_files_keep_outputs(model: nn.Module, tmp_path: Path) -> None:
    """save/load onto the ORIGINAL pretrained base, and the PEFT export, give the model's outputs."""
    model.eval()
    expected = _outputs(model)
    lora.save_adapter(model, tmp_path / "adapter")
    loaded = lora.load_adapter(_base().eval(), tmp_path / "adapter")
    torch.testing.assert_close(_outputs(loaded), expected, **TOL)
    lora.export_peft(model, tmp_path / "peft")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exported = PeftModel.from_pretrained(_base(), tmp_path / "peft").eval()
    torch.testing.assert_close(_outputs(exported), expected, **TOL)


# -- DoRA --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_dora_matches_peft(dropout: float, tmp_path: Path) -> None:
    config = lora.LoRAConfig(r=2, lora_alpha=4, lora_dropout=dropout, use_dora=True)
    ours, theirs = _pair(config)
    peft_params = dict(theirs.named_parameters())
    for name, param in _adapter_params(ours).items():  # the magnitude starts at W0's per-output norms
        if name.endswith("lora_magnitude_vector"):
            torch.testing.assert_close(param, peft_params[_peft_key(name)], rtol=1e-6, atol=0)
    torch.testing.assert_close(ours.up.lora_magnitude_vector, ours.up.weight.norm(dim=1))
    torch.testing.assert_close(ours.proj.lora_magnitude_vector, ours.proj.weight.norm(dim=0))
    _train_like(ours, theirs)
    ours.train(), theirs.train()  # with dropout, both draw the same masks in the same order
    _assert_same_outputs_and_gradients(ours, theirs)
    _assert_merging_keeps_outputs(ours)
    _assert_files_keep_outputs(ours, tmp_path)


def test_dora_magnitudes_count_as_trainable_adapter_parameters() -> None:
    ours, theirs = _pair(lora.LoRAConfig(r=2, lora_alpha=4, use_dora=True))
    lora.mark_only_lora_as_trainable(ours)
    count = lora.count_parameters(ours, head_modules=())
    magnitudes = 10 + 7 + 5
    lora_ab = 2 * (6 + 10) + 2 * (10 + 7) + 2 * (7 + 5)
    assert count.trainable == count.lora == lora_ab + magnitudes
    assert count.trainable == theirs.get_nb_trainable_parameters()[0]


def test_dora_export_refuses_mixed_layers(tmp_path: Path) -> None:
    model = _base()
    lora.inject_lora(model, ["up"], config=lora.LoRAConfig(r=2, use_dora=True))
    lora.inject_lora(model, ["down"], r=2)
    with pytest.raises(lora.LoRAConfigError, match=r"PEFT has one use_dora for all layers.*down do not"):
        lora.export_peft(model, tmp_path)


# -- PiSSA -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        lora.LoRAConfig(r=2, lora_alpha=4, init="pissa"),
        lora.LoRAConfig(r=3, lora_alpha=5, init="pissa", use_rslora=True),
        lora.LoRAConfig(r=2, lora_alpha=4, init="pissa", use_dora=True),
    ],
    ids=["pissa", "pissa-rslora", "pissa-dora"],
)
def test_pissa_matches_peft(config: lora.LoRAConfig, tmp_path: Path) -> None:
    ours, theirs = _pair(config, init_lora_weights="pissa")
    peft_params = dict(theirs.named_parameters())
    for name, param in _adapter_params(ours).items():  # the same SVD factors (and magnitudes)
        torch.testing.assert_close(param, peft_params[_peft_key(name)], rtol=1e-5, atol=1e-6, msg=name)
    for target in TARGETS:  # the same residual W0 - scaling * B0 A0
        residual = getattr(ours, target).weight
        torch.testing.assert_close(residual, peft_params[f"base_model.model.{target}.base_layer.weight"], **TOL)
    base = _base()
    torch.testing.assert_close(_outputs(ours), _outputs(base), **TOL)  # PiSSA starts at the pretrained model
    torch.testing.assert_close(_outputs(theirs), _outputs(base), **TOL)

    _train_like(ours, theirs)
    _assert_same_outputs_and_gradients(ours, theirs)
    _assert_merging_keeps_outputs(ours)
    _assert_files_keep_outputs(ours, tmp_path)


def test_pissa_adapter_is_a_rank_2r_lora_of_the_pretrained_weight(tmp_path: Path) -> None:
    model = _base()
    lora.inject_lora(model, ["up"], config=lora.LoRAConfig(r=2, lora_alpha=4, init="pissa"))
    with torch.no_grad():
        model.up.lora_B.add_(0.1)
    lora.save_adapter(model, tmp_path)
    config, tensors = lora.adapter.read_adapter(tmp_path)
    record = config["layers"]["up"]
    assert (record["r"], record["lora_alpha"], record["init"]) == (4, 8, "default")
    assert tensors["up.lora_A"].shape == (4, 6) and tensors["up.lora_B"].shape == (10, 4)
    # The residual is not the weight the adapter applies to: both refusals name the problem.
    residual_base = lora.merge_and_unload(copy.deepcopy(model))
    with pytest.raises(lora.BaseWeightsMismatchError, match="not those the adapter was trained on"):
        lora.load_adapter(residual_base, tmp_path)
    with pytest.raises(lora.AdapterMismatchError, match=r"up: the model's layer is PiSSA-initialised"):
        lora.load_adapter(model, tmp_path)


# -- rsLoRA and the Gaussian init --------------------------------------------------------------------


def test_rslora_matches_peft(tmp_path: Path) -> None:
    ours, theirs = _pair(lora.LoRAConfig(r=4, lora_alpha=3, use_rslora=True))
    for target in TARGETS:
        assert getattr(ours, target).scaling == theirs.base_model.model.get_submodule(target).scaling["default"]
    _train_like(ours, theirs)
    _assert_same_outputs_and_gradients(ours, theirs)
    _assert_merging_keeps_outputs(ours)
    _assert_files_keep_outputs(ours, tmp_path)


def test_gaussian_init_matches_peft_in_distribution() -> None:
    r = 4
    ours = nn.Sequential(nn.Linear(512, 8))
    theirs = get_peft_model(copy.deepcopy(ours), LoraConfig(r=r, target_modules=["0"], init_lora_weights="gaussian"))
    lora.inject_lora(ours, ["0"], config=lora.LoRAConfig(r=r, init="gaussian"))
    for a, b in ((ours[0].lora_A, ours[0].lora_B), (theirs.base_model.model[0].lora_A["default"].weight, None)):
        assert abs(a.mean().item()) < 0.02 and abs(a.std().item() - 1 / r) < 0.02  # N(0, (1/r)^2), 2048 draws
        assert b is None or torch.count_nonzero(b) == 0


def test_pissa_export_equals_peft_own_conversion_to_lora(tmp_path: Path) -> None:
    """PEFT's save_pretrained(path_initial_model_for_weight_conversion=...) writes the same rank-2r LoRA."""
    ours, theirs = _pair(lora.LoRAConfig(r=2, lora_alpha=4, init="pissa"), init_lora_weights="pissa")
    theirs.peft_config["default"].init_lora_weights = True  # PEFT's recipe: save the initial adapter as LoRA
    theirs.save_pretrained(tmp_path / "initial")
    theirs.peft_config["default"].init_lora_weights = "pissa"
    _train_like(ours, theirs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs.save_pretrained(tmp_path / "peft", path_initial_model_for_weight_conversion=tmp_path / "initial")
    lora.export_peft(ours, tmp_path / "ours")
    expected, found = (load_file(tmp_path / d / "adapter_model.safetensors") for d in ("peft", "ours"))
    assert found.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(found[key], value, rtol=0, atol=0, msg=key)
    configs = [json.loads((tmp_path / d / "adapter_config.json").read_text()) for d in ("peft", "ours")]
    assert [(c["r"], c["lora_alpha"], c["rank_pattern"], c["alpha_pattern"]) for c in configs] == [(4, 8, {}, {})] * 2
