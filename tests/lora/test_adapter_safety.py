"""Adapter refusals that keep runs trustworthy: edited configs, NaN/inf, merged bases, empty loads and saves.

Each test shows the refusal and that nothing is lost: the untouched file still loads, and a refused load
leaves the model as it was.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file
from transformers import GPT2LMHeadModel, RobertaForSequenceClassification

import lora
from lora._integrity import seal
from lora.adapter import CONFIG_FILE, TENSORS_FILE, read_adapter
from tests.lora.test_adapter import _fresh, _logits, _roberta_adapted
from tests.tiny_models import tiny_gpt2_config, tiny_roberta_config

QUERY = "roberta.encoder.layer.0.attention.self.query"
QUERY_ENTRY = r"layers\['roberta\.encoder\.layer\.0\.attention\.self\.query'\]"


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor], torch.Tensor]:
    """An adapter directory, the base weights it was trained on, and the adapted model's logits."""
    adapted, base_state = _roberta_adapted()
    directory = tmp_path / "adapter"
    lora.save_adapter(adapted, directory, modules_to_save=["classifier"])
    return directory, base_state, _logits(adapted)


def _base(base_state: dict[str, torch.Tensor]) -> nn.Module:
    return _fresh(RobertaForSequenceClassification, tiny_roberta_config(), base_state)


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


def _assert_unchanged(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    assert not list(lora.named_lora_layers(model))
    after = model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], v) for k, v in before.items())


def _edit_config(directory: Path, edit) -> None:
    config = json.loads((directory / CONFIG_FILE).read_text())
    edit(config)
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2))


# -- 1. the checksums cover the config -------------------------------------------------------------


def _set_layer(field: str, value: object):
    def edit(config: dict) -> None:
        config["layers"][QUERY][field] = value

    return edit


EDITS = [
    (_set_layer("lora_alpha", 16), QUERY_ENTRY + r" \(now .*lora_alpha=16"),
    (_set_layer("use_rslora", True), QUERY_ENTRY + r" \(now .*use_rslora=True"),
    (lambda c: c.update(bias="all"), r"bias \(now 'all'\)"),
    (lambda c: c.update(modules_to_save=[]), r"modules_to_save \(now \[\]\)"),
    (lambda c: c["layers"].pop(QUERY), QUERY_ENTRY + r" \(removed\)"),
]


@pytest.mark.parametrize(("edit", "names"), EDITS)
def test_an_edited_config_is_refused_and_the_saved_one_still_loads(saved, edit, names: str) -> None:
    directory, base_state, expected = saved
    original = (directory / CONFIG_FILE).read_bytes()
    _edit_config(directory, edit)
    model = _base(base_state)
    before = _snapshot(model)
    with pytest.raises(
        lora.AdapterIntegrityError,
        match=r"adapter_config\.json was edited after saving: in .*adapter_config\.json, "
        + names
        + r".* no longer match the checksums "
        r"save_adapter recorded.*Restore the file as saved, or .* save the adapter again",
    ):
        lora.load_adapter(model, directory)
    _assert_unchanged(model, before)
    with pytest.raises(lora.AdapterIntegrityError, match="was edited after saving"):
        read_adapter(directory)

    (directory / CONFIG_FILE).write_bytes(original)
    torch.testing.assert_close(_logits(lora.load_adapter(model, directory)), expected, rtol=0, atol=0)


def test_metadata_may_be_edited(saved) -> None:
    directory, base_state, expected = saved
    _edit_config(directory, lambda c: c["metadata"].update(note="reviewed"))
    torch.testing.assert_close(_logits(lora.load_adapter(_base(base_state), directory)), expected, rtol=0, atol=0)


def test_format_version_1_still_loads_with_a_warning(saved) -> None:
    directory, base_state, expected = saved

    def downgrade(config: dict) -> None:
        del config["checksums"]
        config["format_version"] = 1
        for record in config["layers"].values():
            del record["base_weight_fingerprint"]

    _edit_config(directory, downgrade)
    with pytest.warns(UserWarning, match=r"format version 1, which has no checksums .* save it again"):
        model = lora.load_adapter(_base(base_state), directory)
    torch.testing.assert_close(_logits(model), expected, rtol=0, atol=0)


# -- 2. strict=False that would load nothing ---------------------------------------------------------


def test_a_non_strict_load_that_fits_nothing_is_refused(saved) -> None:
    directory, _, _ = saved
    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(tiny_gpt2_config())
    before = _snapshot(gpt2)
    for lora_only in (False, True):
        with pytest.raises(
            lora.AdapterMismatchError,
            match=r"nothing of the adapter in .*adapter fits GPT2LMHeadModel: none of its 5 LoRA layer\(s\) and "
            r"\d+ tensor\(s\) .* so strict=False would load nothing\. It was saved from a roberta model "
            r"\(RobertaForSequenceClassification, None\); load it into that base model",
        ):
            lora.load_adapter(gpt2, directory, strict=False, lora_only=lora_only)
        _assert_unchanged(gpt2, before)


# -- 3. weights that already hold the update ---------------------------------------------------------


def _merged(base_state: dict[str, torch.Tensor], directory: Path, dtype: torch.dtype) -> nn.Module:
    """A ``merge_and_unload`` output of the saved adapter: plain modules whose weights hold W0 + dW."""
    model = lora.load_adapter(_base(base_state).to(dtype), directory)
    return lora.merge_and_unload(model)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_loading_onto_a_merged_model_is_refused(saved, dtype: torch.dtype) -> None:
    directory, base_state, _ = saved
    merged = _merged(base_state, directory, dtype)
    before = _snapshot(merged)
    name = str(dtype).removeprefix("torch.")
    with pytest.raises(
        lora.BaseWeightsMismatchError,
        match=rf"base weights are not those the adapter was trained on: .*{QUERY}: its weight differs from the "
        rf"one trained on by .* \(relative; rounding between {name} here and float32 when saved explains at most "
        r".*\)\..* merge_and_unload "
        r"output, perhaps of this very adapter, which would then apply it twice.*check_base_weights=False",
    ):
        lora.load_adapter(merged, directory)
    _assert_unchanged(merged, before)

    # LoRA layers injected over the merged weights do not hide them.
    lora.inject_lora(merged, ["Wq", "Wv"], r=4, lora_alpha=8)
    lora.inject_lora(merged, ["word_embeddings"], r=3, lora_alpha=5, use_rslora=True)
    with pytest.raises(lora.BaseWeightsMismatchError, match=rf"{QUERY}: its weight differs"):
        lora.load_adapter(merged, directory)


def test_the_pretrained_base_in_another_dtype_still_loads(saved) -> None:
    directory, base_state, expected = saved
    model = lora.load_adapter(_base(base_state).to(torch.bfloat16), directory)
    assert len(list(lora.named_lora_layers(model))) == 5
    torch.testing.assert_close(_logits(model).float(), expected, rtol=0.1, atol=0.1)


def test_other_weights_load_only_on_request(saved) -> None:
    directory, base_state, _ = saved
    merged = _merged(base_state, directory, torch.float32)
    lora.load_adapter(merged, directory, check_base_weights=False)
    assert len(list(lora.named_lora_layers(merged))) == 5


def test_loading_into_the_adapters_own_layers_replaces_them_never_adds(saved) -> None:
    directory, base_state, expected = saved
    model = lora.load_adapter(_base(base_state), directory)
    lora.load_adapter(model, directory)  # the same layers, loaded again: A and B are replaced
    torch.testing.assert_close(_logits(model), expected, rtol=0, atol=0)


def test_a_base_weight_saved_with_the_adapter_is_not_checked_but_loaded(tmp_path: Path) -> None:
    torch.manual_seed(0)
    base = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 2))
    adapted = copy.deepcopy(base)
    lora.inject_lora(adapted, ["0", "1"], r=2)
    with torch.no_grad():
        adapted[0].weight.add_(1.0)  # the embedding trained whole, and saved whole
    lora.save_adapter(adapted, tmp_path, modules_to_save=["0"])
    fresh = lora.load_adapter(copy.deepcopy(base), tmp_path)
    assert torch.equal(fresh[0].weight, adapted[0].weight)
    with pytest.raises(lora.BaseWeightsMismatchError, match=r"the adapter was trained on: 0: its weight differs"):
        lora.load_adapter(copy.deepcopy(base), tmp_path, lora_only=True)


# -- 4. nothing to save ------------------------------------------------------------------------------


def test_saving_a_model_without_lora_layers_is_refused(tmp_path: Path) -> None:
    torch.manual_seed(0)
    plain = RobertaForSequenceClassification(tiny_roberta_config())
    with pytest.raises(
        lora.LoRAConfigError,
        match=r"RobertaForSequenceClassification has no LoRA layer, so there is no adapter to save; add them "
        r"with lora\.inject_lora",
    ):
        lora.save_adapter(plain, tmp_path / "adapter", modules_to_save=["classifier"])
    assert not (tmp_path / "adapter").exists()


# -- 5. NaN and inf ------------------------------------------------------------------------------------


def test_non_finite_tensors_are_refused_on_save(saved) -> None:
    directory, _, _ = saved
    before = {path.name: path.read_bytes() for path in directory.iterdir()}
    adapted, _ = _roberta_adapted()
    with torch.no_grad():
        adapted.roberta.encoder.layer[1].attention.self.value.lora_B[0, 0] = float("nan")
        adapted.classifier.dense.bias[3] = float("inf")
    with pytest.raises(
        lora.LoRAConfigError,
        match=r"cannot save the adapter: 2 tensor\(s\) hold NaN or inf: classifier\.dense\.bias \(1 of 32 values\), "
        r"roberta\.encoder\.layer\.1\.attention\.self\.value\.lora_B \(1 of 128 values\)\. Training diverged",
    ):
        lora.save_adapter(adapted, directory, modules_to_save=["classifier"])
    assert {path.name: path.read_bytes() for path in directory.iterdir()} == before


def test_non_finite_tensors_are_refused_on_load(saved) -> None:
    directory, base_state, expected = saved
    original = {path.name: path.read_bytes() for path in directory.iterdir()}
    tensors = load_file(directory / TENSORS_FILE)
    tensors[f"{QUERY}.lora_A"][1, 2] = float("-inf")
    save_file(tensors, directory / TENSORS_FILE, metadata={"format": "pt"})

    def relist(config: dict) -> None:  # a writer that checks nothing, with consistent checksums
        config["tensors_sha256"] = hashlib.sha256((directory / TENSORS_FILE).read_bytes()).hexdigest()
        config["checksums"] = seal(config)

    _edit_config(directory, relist)
    model = _base(base_state)
    before = _snapshot(model)
    with pytest.raises(
        lora.AdapterIntegrityError,
        match=rf"adapter\.safetensors in .* holds NaN or inf in 1 tensor\(s\): {QUERY}\.lora_A \(1 of 128 values\); "
        r"only finite values are allowed",
    ):
        lora.load_adapter(model, directory)
    _assert_unchanged(model, before)

    for name, data in original.items():
        (directory / name).write_bytes(data)
    torch.testing.assert_close(_logits(lora.load_adapter(model, directory)), expected, rtol=0, atol=0)


# -- 7. what is written --------------------------------------------------------------------------------


def test_files_are_world_readable_whatever_the_umask(tmp_path: Path) -> None:
    adapted, _ = _roberta_adapted()
    previous = os.umask(0o077)
    try:
        lora.save_adapter(adapted, tmp_path)
    finally:
        os.umask(previous)
    assert {path.name: path.stat().st_mode & 0o777 for path in tmp_path.iterdir()} == {
        CONFIG_FILE: 0o644,
        TENSORS_FILE: 0o644,
    }


def test_the_base_model_is_recorded_by_name_not_by_local_path(tmp_path: Path) -> None:
    adapted, _ = _roberta_adapted()
    local = tmp_path / "models" / "roberta-base"
    local.mkdir(parents=True)

    def recorded(name_or_path: str, **kwargs) -> str | None:
        adapted.config._name_or_path = name_or_path
        lora.save_adapter(adapted, tmp_path / "adapter", **kwargs)
        text = (tmp_path / "adapter" / CONFIG_FILE).read_text()
        assert str(tmp_path) not in text
        return json.loads(text)["base_model"]["name_or_path"]

    assert recorded(str(local)) == "roberta-base"
    assert recorded(f"{local}/") == "roberta-base"
    assert recorded("FacebookAI/roberta-base") == "FacebookAI/roberta-base"
    assert recorded(str(local), base_model_name="roberta-base@v1") == "roberta-base@v1"
