"""LoRAConfig: one validated set of hyperparameters taken by layers, inject_lora and adapter files."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import lora
from lora._integrity import UNSEALED_FIELDS, seal
from lora.adapter import CONFIG_FILE, read_adapter
from lora.config import alpha_for_scaling
from tests.lora.test_adapter import _fresh, _logits, _roberta_adapted
from tests.tiny_models import tiny_roberta_config


def test_defaults_and_scaling() -> None:
    config = lora.LoRAConfig()
    assert dataclasses.asdict(config) == {
        "r": 8,
        "lora_alpha": 8,
        "lora_dropout": 0.0,
        "use_rslora": False,
        "init": "default",
        "use_dora": False,
        "merge_weights": True,
    }
    assert config.scaling == 1.0
    assert lora.LoRAConfig(r=4, lora_alpha=16).scaling == 4.0
    assert lora.LoRAConfig(r=16, lora_alpha=8, use_rslora=True).scaling == 2.0
    assert lora.LoRAConfig(r=0).scaling == 0.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.r = 4  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"r": -1}, r"r must be a non-negative integer \(0 disables LoRA\), got -1; e\.g\. LoRAConfig\(r=8\)"),
        ({"r": True}, r"r must be a non-negative integer .*got True"),
        ({"lora_alpha": 0}, r"lora_alpha must be a finite number > 0, got 0; e\.g\. LoRAConfig\(lora_alpha=16\)"),
        ({"lora_alpha": math.nan}, r"lora_alpha must be a finite number > 0, got nan"),
        ({"lora_dropout": 1.0}, r"lora_dropout must be in \[0, 1\), got 1\.0"),
        ({"use_dora": 1}, r"use_dora must be True or False, got 1"),
        ({"init": "olora"}, r"init must be one of 'default', 'gaussian', 'pissa', got 'olora'; e\.g\."),
    ],
)
def test_out_of_range_values_name_field_value_range_and_fix(kwargs, message: str) -> None:
    with pytest.raises(lora.LoRAConfigError, match=message):
        lora.LoRAConfig(**kwargs)


def test_with_rank_keeps_the_scaling_bit_for_bit() -> None:
    for config in (lora.LoRAConfig(r=3, lora_alpha=5), lora.LoRAConfig(r=3, lora_alpha=5, use_rslora=True)):
        doubled = config.with_rank(6)
        assert doubled.r == 6 and doubled.scaling == config.scaling
    assert lora.LoRAConfig(r=4, lora_alpha=8).with_rank(8).lora_alpha == 16
    assert math.isclose(alpha_for_scaling(0.1, 3, False) / 3, 0.1, rel_tol=2**-52)


def test_layers_take_a_config_or_loralib_keywords_not_both() -> None:
    config = lora.LoRAConfig(r=4, lora_alpha=8, lora_dropout=0.1, use_rslora=True)
    layer = lora.Linear(6, 5, config=config)
    assert layer.config is config and (layer.r, layer.lora_alpha, layer.scaling) == (4, 8, 4.0)
    assert isinstance(layer.lora_dropout, nn.Dropout) and layer.lora_dropout.p == 0.1
    assert lora.Linear(6, 5, r=4, lora_alpha=8, lora_dropout=0.1, use_rslora=True).config == config
    with pytest.raises(lora.LoRAConfigError, match=r"r=2 given together with config=LoRAConfig\(r=4, .*replace"):
        lora.Linear(6, 5, r=2, config=config)
    # Embedding lookups get no dropout, as in loralib and PEFT.
    assert lora.Embedding(10, 4, config=config).config.lora_dropout == 0.0


def test_inject_lora_takes_a_config(tiny_roberta) -> None:
    config = lora.LoRAConfig(r=2, lora_alpha=6, lora_dropout=0.1)
    names = lora.inject_lora(tiny_roberta, ["Wq", "Wv"], config=config)
    assert len(names) == 4
    assert all(layer.config == config for _, layer in lora.named_lora_layers(tiny_roberta))
    with pytest.raises(lora.LoRAConfigError, match="lora_alpha=16 given together with config"):
        lora.inject_lora(tiny_roberta, ["Wk"], lora_alpha=16, config=config)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (lora.LoRAConfig(r=2, use_dora=True), r"lora\.MergedLinear does not support use_dora=True: DoRA is"),
        (lora.LoRAConfig(r=2, init="pissa"), r"lora\.MergedLinear does not support init='pissa'"),
    ],
)
def test_variants_a_layer_lacks_are_refused_clearly(tiny_gpt2, config, message: str) -> None:
    with pytest.raises(lora.LoRAConfigError, match=message):
        lora.inject_lora(tiny_gpt2, ["Wq", "Wv"], config=config)
    assert not list(lora.named_lora_layers(tiny_gpt2))
    with pytest.raises(lora.LoRAConfigError, match=r"lora\.Embedding does not support use_dora=True"):
        lora.Embedding(10, 4, config=lora.LoRAConfig(r=2, use_dora=True))
    with pytest.raises(lora.LoRAConfigError, match=r"lora\.Conv2d does not support init='gaussian'"):
        lora.Conv2d(3, 4, 3, config=lora.LoRAConfig(r=2, init="gaussian"))
    with pytest.raises(lora.LoRAConfigError, match=r"init='pissa' needs r <= min\(in_features, out_features\) = 3"):
        lora.Linear(3, 5, config=lora.LoRAConfig(r=4, init="pissa"))


def test_format_2_adapters_still_load(tmp_path: Path) -> None:
    """Files written before LoRAConfig (no init/use_dora in their records) load with the defaults."""
    adapted, base_state = _roberta_adapted()
    lora.save_adapter(adapted, tmp_path, modules_to_save=["classifier"])
    document = json.loads((tmp_path / CONFIG_FILE).read_text())
    document["format_version"] = 2
    for record in document["layers"].values():
        del record["init"], record["use_dora"]
    sealed = {key: value for key, value in document.items() if key not in UNSEALED_FIELDS}
    document["checksums"] = seal(sealed)
    (tmp_path / CONFIG_FILE).write_text(json.dumps(document))
    model = lora.load_adapter(_fresh(type(adapted), tiny_roberta_config(), base_state), tmp_path)
    torch.testing.assert_close(_logits(model), _logits(adapted), rtol=0, atol=0)


def test_a_record_with_an_unknown_init_is_refused(tmp_path: Path) -> None:
    adapted, _ = _roberta_adapted()
    lora.save_adapter(adapted, tmp_path)
    document = json.loads((tmp_path / CONFIG_FILE).read_text())
    for record in document["layers"].values():
        record["init"] = "olora"
    document["checksums"] = seal({k: v for k, v in document.items() if k not in UNSEALED_FIELDS})
    (tmp_path / CONFIG_FILE).write_text(json.dumps(document))
    with pytest.raises(lora.AdapterIntegrityError, match=r"is invalid: init must be one of"):
        read_adapter(tmp_path)
