"""Export to PEFT, checked against the real ``peft`` package: outputs, key names, scalings and merging."""

from __future__ import annotations

import copy
import json
import math
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from peft import PeftModel, get_peft_model_state_dict
from peft.tuners.lora import LoraLayer
from safetensors.torch import load_file
from transformers import GPT2LMHeadModel, RobertaForSequenceClassification

import lora
from lora.peft_export import peft_lora_alpha, whole_layer_factors
from tests.tiny_models import tiny_gpt2_config, tiny_roberta_config

IDS = torch.randint(3, 120, (2, 9), generator=torch.Generator().manual_seed(1))


def _train_like(model: nn.Module, trained=lambda name: "lora_" in name, seed: int = 0) -> None:
    """Random LoRA matrices (B != 0) and perturbed extra parameters, as after some training."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.2)
            elif trained(name):
                param.add_(torch.randn(param.shape, generator=gen) * 0.2)


def _build(cls, config):
    torch.manual_seed(0)
    model = cls(config).eval()
    return model, copy.deepcopy(model.state_dict())


def _base(cls, config, base_state) -> nn.Module:
    torch.manual_seed(99)
    model = cls(config).eval()
    model.load_state_dict(base_state)
    return model


def _peft_load(base: nn.Module, directory: Path) -> PeftModel:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = PeftModel.from_pretrained(base, directory).eval()
    assert not [w for w in caught if "missing adapter keys" in str(w.message)]
    return model


def _logits(model: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=IDS).logits


def _peft_layers(model: PeftModel) -> dict[str, nn.Module]:
    inner = model.base_model.model
    return {name: m for name, m in inner.named_modules() if isinstance(m, LoraLayer)}


def _assert_same_keys_as_peft(peft_model: PeftModel, directory: Path) -> None:
    """PEFT's own state dict for this config has exactly our keys and shapes: the naming is PEFT's."""
    theirs = {k: tuple(v.shape) for k, v in get_peft_model_state_dict(peft_model).items()}
    ours = {k: tuple(v.shape) for k, v in load_file(directory / "adapter_model.safetensors").items()}
    assert ours == theirs


def test_roberta_sequence_classification_with_head_matches_peft(tmp_path: Path) -> None:
    model, base_state = _build(RobertaForSequenceClassification, tiny_roberta_config())
    lora.inject_lora(model, ["Wq", "Wv"], r=4, lora_alpha=8)
    lora.inject_lora(model, ["Wk"], r=2, lora_alpha=5)
    lora.inject_lora(model, ["word_embeddings"], r=3, lora_alpha=5, use_rslora=True)
    _train_like(model, trained=lambda name: name.startswith("classifier."))
    lora.export_peft(model, tmp_path, modules_to_save=["classifier"], task_type="SEQ_CLS")

    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert (config["peft_type"], config["task_type"], config["r"], config["lora_alpha"]) == (
        "LORA",
        "SEQ_CLS",
        4,
        8,
    )
    assert config["modules_to_save"] == ["classifier"] and config["use_rslora"] is False
    assert config["rank_pattern"]["^roberta\\.encoder\\.layer\\.1\\.attention\\.self\\.key"] == 2

    peft_model = _peft_load(_base(RobertaForSequenceClassification, tiny_roberta_config(), base_state), tmp_path)
    _assert_same_keys_as_peft(peft_model, tmp_path)
    ours = dict(lora.named_lora_layers(model))
    theirs = _peft_layers(peft_model)
    assert theirs.keys() == ours.keys()
    for name, layer in ours.items():
        scaling = theirs[name].scaling["default"]
        if layer.use_rslora:  # moved to PEFT's plain scaling through alpha: within one rounding
            assert math.isclose(scaling, layer.scaling, rel_tol=2**-52)
        else:
            assert scaling == layer.scaling
    torch.testing.assert_close(_logits(peft_model), _logits(model), rtol=1e-5, atol=1e-6)


def test_gpt2_q_v_slices_become_an_equivalent_whole_c_attn_lora(tmp_path: Path) -> None:
    model, base_state = _build(GPT2LMHeadModel, tiny_gpt2_config())
    lora.inject_lora(model, ["Wq", "Wv"], r=2, lora_alpha=4, lora_dropout=0.1)
    lora.inject_lora(model, ["Wo"], r=2, lora_alpha=3, lora_dropout=0.1)
    lora.inject_lora(model, ["wte"], r=2, lora_alpha=4)  # no dropout on embeddings, in either library
    _train_like(model)
    lora.export_peft(model, tmp_path, task_type="CAUSAL_LM")

    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["fan_in_fan_out"] is True and config["lora_dropout"] == 0.1
    peft_model = _peft_load(_base(GPT2LMHeadModel, tiny_gpt2_config(), base_state), tmp_path)
    _assert_same_keys_as_peft(peft_model, tmp_path)
    c_attn = peft_model.base_model.model.transformer.h[1].attn.c_attn
    ours = model.transformer.h[1].attn.c_attn
    assert c_attn.r["default"] == 4 and c_attn.fan_in_fan_out
    assert c_attn.scaling["default"] == ours.scaling == 2.0
    b = c_attn.lora_B["default"].weight
    assert b.shape == (96, 4) and torch.count_nonzero(b[32:64]) == 0  # k untouched
    assert torch.count_nonzero(b[:32, 2:]) == 0 and torch.count_nonzero(b[64:, :2]) == 0  # block diagonal
    assert peft_model.base_model.model.transformer.h[1].attn.c_proj.r["default"] == 2
    torch.testing.assert_close(_logits(peft_model), _logits(model), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mixed", [False, True], ids=["all-rslora", "mixed-rslora"])
def test_rslora_scalings_survive_the_rank_change(mixed: bool, tmp_path: Path) -> None:
    model, base_state = _build(GPT2LMHeadModel, tiny_gpt2_config())
    lora.inject_lora(model, ["Wq", "Wv"], r=3, lora_alpha=5, use_rslora=True)
    if mixed:
        lora.inject_lora(model, ["Wo"], r=2, lora_alpha=7)
    _train_like(model)
    lora.export_peft(model, tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["use_rslora"] is not mixed and config["r"] == 6
    peft_model = _peft_load(_base(GPT2LMHeadModel, tiny_gpt2_config(), base_state), tmp_path)
    theirs = _peft_layers(peft_model)
    for name, layer in lora.named_lora_layers(model):
        assert math.isclose(theirs[name].scaling["default"], layer.scaling, rel_tol=2**-52)
    torch.testing.assert_close(_logits(peft_model), _logits(model), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bias", ["lora_only", "all"])
def test_trained_biases_are_exported_under_peft_names(bias: str, tmp_path: Path) -> None:
    model, base_state = _build(GPT2LMHeadModel, tiny_gpt2_config())
    lora.inject_lora(model, ["Wq", "Wv"], r=2, lora_alpha=4)
    lora.mark_only_lora_as_trainable(model, bias=bias)
    _train_like(model, trained=lambda name: dict(model.named_parameters())[name].requires_grad)
    lora.export_peft(model, tmp_path, bias=bias)
    keys = load_file(tmp_path / "adapter_model.safetensors").keys()
    assert "base_model.model.transformer.h.0.attn.c_attn.base_layer.bias" in keys
    assert ("base_model.model.transformer.h.0.ln_1.bias" in keys) == (bias == "all")
    peft_model = _peft_load(_base(GPT2LMHeadModel, tiny_gpt2_config(), base_state), tmp_path)
    torch.testing.assert_close(_logits(peft_model), _logits(model), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("enable_lora", "fan_in_fan_out", "use_rslora"),
    [
        ([True, False, True], True, False),
        ([True, True, True], False, True),
        ([False, True, False, True], False, False),
    ],
)
def test_whole_layer_factors_reproduce_each_slice_update(enable_lora, fan_in_fan_out, use_rslora) -> None:
    torch.manual_seed(0)
    out = 6 * len(enable_lora)
    layer = lora.MergedLinear(
        8,
        out,
        r=2,
        lora_alpha=3,
        enable_lora=enable_lora,
        fan_in_fan_out=fan_in_fan_out,
        use_rslora=use_rslora,
    )
    nn.init.normal_(layer.lora_B)
    a, b = whole_layer_factors(layer)
    rank = 2 * sum(enable_lora)
    alpha = peft_lora_alpha(layer, rank, use_rslora)
    peft_scaling = alpha / (math.sqrt(rank) if use_rslora else rank)
    assert math.isclose(peft_scaling, layer.scaling, rel_tol=2**-52)

    expected = torch.zeros(out, 8)  # (out, in): B_j A_j in the rows of each enabled slice
    enabled = [i for i, flag in enumerate(enable_lora) if flag]
    for j, index in enumerate(enabled):
        block = layer.lora_B[j * 6 : (j + 1) * 6] @ layer.lora_A[j * 2 : (j + 1) * 2]
        expected[index * 6 : (index + 1) * 6] = layer.scaling * block
    torch.testing.assert_close(peft_scaling * (b @ a), expected.detach(), rtol=1e-6, atol=1e-6)


def test_peft_merge_and_unload_equals_ours(tmp_path: Path) -> None:
    model, base_state = _build(RobertaForSequenceClassification, tiny_roberta_config())
    lora.inject_lora(model, ["Wq", "Wv", "FFN"], r=4, lora_alpha=8)
    lora.inject_lora(model, ["word_embeddings"], r=2, lora_alpha=4)
    _train_like(model, trained=lambda name: name.startswith("classifier."))
    lora.export_peft(model, tmp_path, modules_to_save=["classifier"], task_type="SEQ_CLS")
    peft_model = _peft_load(_base(RobertaForSequenceClassification, tiny_roberta_config(), base_state), tmp_path)
    theirs = peft_model.merge_and_unload().state_dict()
    ours = lora.merge_and_unload(model).state_dict()
    assert theirs.keys() == ours.keys()
    for key, value in ours.items():
        torch.testing.assert_close(theirs[key], value, rtol=1e-6, atol=1e-6, msg=key)


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q = nn.Linear(6, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.q(x)


class _Nested(nn.Module):
    """``encoder.q`` is a dotted suffix of ``inner.encoder.q``: suffix matching would confuse them."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = _Block()
        self.inner = nn.Module()
        self.inner.encoder = _Block()
        self.head = _Block()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.inner.encoder(self.encoder(x)))


@pytest.mark.parametrize("adapt_inner", [False, True])
def test_names_that_are_suffixes_of_other_names_stay_exact(adapt_inner: bool, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _Nested()
    base = copy.deepcopy(model)
    lora.inject_lora_layer(model, "encoder.q", r=2, lora_alpha=3)
    if adapt_inner:  # the majority rank/alpha, so only encoder.q gets a pattern (which must not match inner)
        lora.inject_lora_layer(model, "inner.encoder.q", r=3, lora_alpha=2)
        lora.inject_lora_layer(model, "head.q", r=3, lora_alpha=2)
    _train_like(model)
    lora.export_peft(model, tmp_path)
    peft_model = _peft_load(base, tmp_path)
    assert _peft_layers(peft_model).keys() == {name for name, _ in lora.named_lora_layers(model)}
    if adapt_inner:
        assert peft_model.base_model.model.inner.encoder.q.r["default"] == 3
        assert peft_model.base_model.model.encoder.q.r["default"] == 2
    x = torch.randn(4, 6)
    torch.testing.assert_close(peft_model(x), model(x), rtol=1e-5, atol=1e-6)


# -- refusals --------------------------------------------------------------------------------


def test_conv_lora_has_no_peft_equivalent(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Conv2d(4, 4, 3), nn.Linear(4, 4))
    lora.inject_lora(model, ["0", "1"], r=2)
    with pytest.raises(
        lora.UnsupportedModuleError,
        match=r"0 is a lora\.Conv2d, whose update \(loralib's B \(12, 6\) @ A \(6, 12\) reshaped into the "
        r"kernel\) has no PEFT equivalent",
    ):
        lora.export_peft(model, tmp_path)
    assert not list(tmp_path.iterdir())


class _CustomLoRA(lora.LoRALayer, nn.Module):
    """A LoRA layer of a kind PEFT does not know."""

    def __init__(self) -> None:
        nn.Module.__init__(self)
        lora.LoRALayer.__init__(self, 2, 2, 0.0, merge_weights=False)
        self.lora_A = nn.Parameter(torch.zeros(2, 4))
        self.lora_B = nn.Parameter(torch.zeros(4, 2))


def test_unknown_lora_layer_kinds_are_refused(tmp_path: Path) -> None:
    with pytest.raises(lora.UnsupportedModuleError, match="0 is a _CustomLoRA, which has no PEFT LoRA counterpart"):
        lora.export_peft(nn.Sequential(_CustomLoRA()), tmp_path)


def test_refusals_name_the_problem(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = RobertaForSequenceClassification(tiny_roberta_config()).eval()
    with pytest.raises(lora.LoRAConfigError, match="has no LoRA layer with parameters to export"):
        lora.export_peft(model, tmp_path)
    with pytest.raises(lora.LoRAConfigError, match="a bare LoRA layer has no module name for PEFT"):
        lora.export_peft(lora.Linear(4, 4, r=2), tmp_path)
    lora.inject_lora(model, ["Wq"], r=2, lora_dropout=0.1)
    lora.inject_lora(model, ["Wv"], r=2)
    with pytest.raises(
        lora.LoRAConfigError,
        match=r"one lora_dropout for all layers, .*layer\.0\.attention\.self\.query=0\.1, .*value=0\.0",
    ):
        lora.export_peft(model, tmp_path)
    model.roberta.encoder.layer[0].attention.self.query.lora_dropout = nn.Identity()
    model.roberta.encoder.layer[1].attention.self.query.lora_dropout = nn.Identity()
    with pytest.raises(lora.LoRAConfigError, match=r"task_type must be None or one of SEQ_CLS, .*got 'seq_cls'"):
        lora.export_peft(model, tmp_path, task_type="seq_cls")
    lora.inject_lora(model, ["out_proj"], r=2)
    for kwargs in ({"modules_to_save": ["classifier"]}, {"task_type": "SEQ_CLS"}):
        with pytest.raises(
            lora.LoRAConfigError,
            match=r"the LoRA layer classifier\.out_proj lies in a module PEFT saves whole",
        ):
            lora.export_peft(model, tmp_path, **kwargs)
    assert not list(tmp_path.iterdir())


def test_modules_to_save_that_peft_would_widen_are_refused(tmp_path: Path) -> None:
    model = nn.ModuleDict({"classifier": nn.Linear(4, 2), "my_classifier": nn.Linear(4, 2), "body": nn.Linear(4, 4)})
    lora.inject_lora(model, ["body"], r=2)
    with pytest.raises(
        lora.LoRAConfigError, match=r"by name suffix, so 'classifier' would also save \['my_classifier'\]"
    ):
        lora.export_peft(model, tmp_path, modules_to_save=["classifier"])
    lora.export_peft(model, tmp_path, modules_to_save=["classifier", "my_classifier"])
