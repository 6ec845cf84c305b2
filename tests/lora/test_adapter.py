"""Adapter files: round trips into fresh and adapted models, file contents, and every refusal.

Outputs are checked against a dense reference: a plain copy of the base model whose weights are set to
``W0 + alpha/r * B A`` by hand, slice by slice for GPT-2's fused ``c_attn``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from safetensors import safe_open
from transformers import GPT2LMHeadModel, RobertaForMaskedLM, RobertaForSequenceClassification
from transformers.pytorch_utils import Conv1D

import lora
from lora._integrity import seal
from lora.adapter import CONFIG_FILE, TENSORS_FILE
from tests.tiny_models import tiny_gpt2_config, tiny_roberta_config

IDS = torch.randint(3, 120, (2, 9), generator=torch.Generator().manual_seed(1))


def _train_like(model: nn.Module, head: tuple[str, ...] = (), seed: int = 0) -> None:
    """Random LoRA matrices (B != 0) and a perturbed head, as after some training."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.2)
            elif name.startswith(head) and head:
                param.add_(torch.randn(param.shape, generator=gen) * 0.2)


def _fresh(cls: type[nn.Module], config, base_state: dict[str, torch.Tensor]) -> nn.Module:
    """A newly built model (other random init) given the pretrained weights."""
    torch.manual_seed(1234)
    model = cls(config).eval()
    model.load_state_dict(base_state)
    return model


def _scaling(layer: lora.LoRALayer) -> float:
    return layer.lora_alpha / (math.sqrt(layer.r) if layer.use_rslora else layer.r)


def _dense_reference(adapted: nn.Module, cls: type[nn.Module], config, base_state) -> nn.Module:
    """A plain model with W0 + scaling * B A written into each adapted weight, and the adapted head."""
    dense = _fresh(cls, config, base_state)
    plain = dict(dense.named_modules())
    with torch.no_grad():
        for name, layer in lora.named_lora_layers(adapted):
            weight = plain[name].weight  # Linear (out, in), Conv1D (in, out), Embedding (num, dim)
            a, b, s = layer.lora_A, layer.lora_B, _scaling(layer)
            if isinstance(layer, lora.Embedding):
                weight += s * (b @ a).T
            elif isinstance(layer, lora.MergedLinear):
                size = layer.out_features // len(layer.enable_lora)
                enabled = [i for i, flag in enumerate(layer.enable_lora) if flag]
                for j, index in enumerate(enabled):
                    block = s * b[j * size : (j + 1) * size] @ a[j * layer.r : (j + 1) * layer.r]
                    weight[:, index * size : (index + 1) * size] += block.T  # Conv1D layout
            else:
                weight += s * (b @ a).T if layer.fan_in_fan_out else s * (b @ a)
        adapted_state = adapted.state_dict()
        for key, value in dense.state_dict().items():
            if key.startswith(("classifier.", "lm_head.")) or key.endswith("bias"):
                value.copy_(adapted_state[key])
    return dense


def _roberta_adapted() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    model = RobertaForSequenceClassification(tiny_roberta_config()).eval()
    base_state = copy.deepcopy(model.state_dict())
    lora.inject_lora(model, ["Wq", "Wv"], r=4, lora_alpha=8)
    lora.inject_lora(model, ["word_embeddings"], r=3, lora_alpha=5, use_rslora=True)
    _train_like(model, head=("classifier.",))
    return model, base_state


def _gpt2_adapted() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    model = GPT2LMHeadModel(tiny_gpt2_config()).eval()
    base_state = copy.deepcopy(model.state_dict())
    lora.inject_lora(model, ["Wq", "Wv"], r=2, lora_alpha=4)
    lora.inject_lora(model, ["Wo"], r=3, lora_alpha=5, lora_dropout=0.1, use_rslora=True)
    _train_like(model)
    return model, base_state


def _logits(model: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=IDS).logits


CASES = {
    "roberta": (_roberta_adapted, RobertaForSequenceClassification, tiny_roberta_config, ["classifier"]),
    "gpt2": (_gpt2_adapted, GPT2LMHeadModel, tiny_gpt2_config, []),
}


@pytest.mark.parametrize("case", CASES)
def test_round_trip_into_a_fresh_model_injects_the_recorded_layers(case: str, tmp_path: Path) -> None:
    build, cls, config, head = CASES[case]
    adapted, base_state = build()
    expected = _logits(adapted)
    reference = _logits(_dense_reference(adapted, cls, config(), base_state))
    torch.testing.assert_close(expected, reference, rtol=1e-5, atol=1e-5)

    assert lora.save_adapter(adapted, tmp_path / "a" / "b", modules_to_save=head) == tmp_path / "a" / "b"
    fresh = _fresh(cls, config(), base_state)
    assert lora.load_adapter(fresh, tmp_path / "a" / "b") is fresh

    theirs = dict(lora.named_lora_layers(adapted))
    ours = dict(lora.named_lora_layers(fresh))
    assert ours.keys() == theirs.keys()
    for name, layer in ours.items():
        twin = theirs[name]
        assert type(layer) is type(twin) and layer.training == twin.training
        assert (layer.r, layer.lora_alpha, layer.scaling, layer.use_rslora) == (
            twin.r,
            twin.lora_alpha,
            twin.scaling,
            twin.use_rslora,
        )
        assert type(layer.lora_dropout) is type(twin.lora_dropout)
        assert getattr(layer, "enable_lora", None) == getattr(twin, "enable_lora", None)
        assert torch.equal(layer.lora_A, twin.lora_A) and torch.equal(layer.lora_B, twin.lora_B)
    torch.testing.assert_close(_logits(fresh), expected, rtol=0, atol=0)
    lora.unmerge(fresh)
    torch.testing.assert_close(_logits(fresh), reference, rtol=1e-5, atol=1e-5)


def test_round_trip_of_plain_modules_with_conv_and_embedding_layers(tmp_path: Path) -> None:
    torch.manual_seed(0)
    base = nn.Sequential(
        nn.Embedding(10, 4), nn.Conv1d(4, 4, 3, padding=1, groups=2), nn.Conv2d(1, 2, (3, 1)), nn.Linear(4, 2)
    )
    adapted = copy.deepcopy(base)
    lora.inject_lora(adapted, ["0", "1", "2", "3"], r=2, lora_alpha=3)
    _train_like(adapted)
    lora.save_adapter(adapted, tmp_path, bias="lora_only")
    fresh = copy.deepcopy(base)
    lora.load_adapter(fresh, tmp_path)
    assert [type(m) for m in fresh] == [lora.Embedding, lora.Conv1d, lora.Conv2d, lora.Linear]
    ids = torch.randint(0, 10, (2, 5))

    def run(model: nn.Module) -> torch.Tensor:
        h = model[1](model[0](ids).transpose(1, 2))  # (2, 4, 5)
        h = model[2](h.unsqueeze(1)).flatten(1)  # (2, 2 * 2 * 5)
        return model[3](h[:, :4])

    # Dense reference: each weight plus its delta (B A reshaped to the kernel, loralib's layout).
    dense = copy.deepcopy(base)
    with torch.no_grad():
        for index, layer in enumerate(adapted):
            delta = layer.lora_B @ layer.lora_A * layer.lora_alpha / layer.r
            dense[index].weight += delta.T if index == 0 else delta.view(dense[index].weight.shape)
    torch.testing.assert_close(run(fresh), run(adapted), rtol=0, atol=0)
    torch.testing.assert_close(run(fresh), run(dense), rtol=1e-5, atol=1e-6)


def test_load_into_existing_lora_layers_while_merged(tmp_path: Path) -> None:
    adapted, base_state = _roberta_adapted()
    lora.save_adapter(adapted, tmp_path, modules_to_save=["classifier"])
    target = _fresh(RobertaForSequenceClassification, tiny_roberta_config(), base_state)
    lora.inject_lora(target, ["Wq", "Wv"], r=4, lora_alpha=8)
    lora.inject_lora(target, ["word_embeddings"], r=3, lora_alpha=5, use_rslora=True)
    _train_like(target, seed=7)
    stale = _logits(target)  # eval mode: every layer is merged, with the old A and B cached
    assert all(layer.merged for _, layer in lora.named_lora_layers(target))
    storages = {name: p.data_ptr() for name, p in target.named_parameters() if "lora_" in name}

    lora.load_adapter(target, tmp_path)
    assert all(layer.merged for _, layer in lora.named_lora_layers(target))
    # Loaded in place: an optimizer holding these parameters sees the loaded values.
    assert storages == {name: p.data_ptr() for name, p in target.named_parameters() if "lora_" in name}
    reference = _dense_reference(adapted, RobertaForSequenceClassification, tiny_roberta_config(), base_state)
    loaded = _logits(target)
    assert not torch.allclose(loaded, stale)
    torch.testing.assert_close(loaded, _logits(reference), rtol=1e-5, atol=1e-5)


def _file_tensors(directory: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    with safe_open(directory / TENSORS_FILE, framework="pt") as handle:
        return {
            key: (tuple(handle.get_slice(key).get_shape()), handle.get_slice(key).get_dtype())
            for key in handle.keys()  # noqa: SIM118 - safe_open handles are not iterable
        }


@pytest.mark.parametrize("bias", ["none", "all", "lora_only"])
def test_file_holds_lora_matrices_chosen_biases_and_saved_modules(bias: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = RobertaForSequenceClassification(tiny_roberta_config()).eval()
    lora.inject_lora(model, ["Wq", "Wv"], r=4, lora_alpha=8, lora_dropout=0.1)
    lora.save_adapter(model, tmp_path, bias=bias, modules_to_save=["classifier"], metadata={"task": "mnli"})

    sites = [f"roberta.encoder.layer.{i}.attention.self.{m}" for i in (0, 1) for m in ("query", "value")]
    expected = {f"{site}.lora_{p}" for site in sites for p in "AB"}
    expected |= {f"classifier.{m}.{p}" for m in ("dense", "out_proj") for p in ("weight", "bias")}
    if bias == "lora_only":
        expected |= {f"{site}.bias" for site in sites}
    if bias == "all":
        expected |= {name for name, _ in model.named_parameters() if name.endswith(".bias")}
    found = _file_tensors(tmp_path)
    assert found.keys() == expected
    assert found["roberta.encoder.layer.0.attention.self.query.lora_A"] == ((4, 32), "F32")

    config = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert config["format"] == "lora-harness-adapter" and config["format_version"] == 3
    assert config["base_model"] == {
        "class_name": "RobertaForSequenceClassification",
        "model_type": "roberta",
        "name_or_path": None,
    }
    assert config["bias"] == bias and config["modules_to_save"] == ["classifier"]
    assert config["metadata"] == {"task": "mnli"}
    assert {k: (tuple(v["shape"]), v["dtype"]) for k, v in config["tensors"].items()} == {
        k: (shape, {"F32": "float32"}[dtype]) for k, (shape, dtype) in found.items()
    }
    assert sorted(config["layers"]) == sites
    stamp = config["layers"][sites[1]].pop("base_weight_fingerprint")
    assert stamp["dtype"] == "float32" and len(stamp["sketch"]) == 16
    assert set(config["checksums"]) == {
        "format",
        "format_version",
        "base_model",
        "bias",
        "modules_to_save",
        "tensors",
        "tensors_sha256",
        *(f"layers[{site!r}]" for site in sites),
    }
    assert config["layers"][sites[1]] == {
        "layer_type": "Linear",
        "r": 4,
        "lora_alpha": 8,
        "lora_dropout": 0.1,
        "use_rslora": False,
        "init": "default",
        "use_dora": False,
        "merge_weights": True,
        "fan_in_fan_out": False,
        "enable_lora": None,
        "base_layer_type": "torch.nn.modules.linear.Linear",
        "base_weight_shape": [32, 32],
    }


def test_gpt2_record_names_slices_and_conv1d_base(tmp_path: Path) -> None:
    adapted, _ = _gpt2_adapted()
    lora.save_adapter(adapted, tmp_path)
    record = json.loads((tmp_path / CONFIG_FILE).read_text())["layers"]["transformer.h.1.attn.c_attn"]
    assert record["layer_type"] == "MergedLinear" and record["enable_lora"] == [True, False, True]
    assert record["fan_in_fan_out"] is True and record["base_weight_shape"] == [32, 96]
    assert record["base_layer_type"] == f"{Conv1D.__module__}.Conv1D"


def test_tied_and_non_contiguous_tensors_are_written_standalone(tmp_path: Path) -> None:
    adapted, base_state = _gpt2_adapted()
    assert adapted.lm_head.weight is adapted.transformer.wte.weight  # tied: one storage, two keys
    with torch.no_grad():
        adapted.lm_head.weight.add_(0.5)
    head = adapted.transformer.h[0].attn.c_proj
    head.lora_B = nn.Parameter(torch.randn(3, 32).T)  # a transposed view: not contiguous
    assert not head.lora_B.is_contiguous()
    lora.save_adapter(adapted, tmp_path, modules_to_save=["lm_head", "wte"])
    assert _file_tensors(tmp_path).keys() >= {"lm_head.weight", "transformer.wte.weight"}

    fresh = _fresh(GPT2LMHeadModel, tiny_gpt2_config(), base_state)
    lora.load_adapter(fresh, tmp_path)
    assert fresh.lm_head.weight is fresh.transformer.wte.weight
    torch.testing.assert_close(fresh.lm_head.weight, adapted.lm_head.weight, rtol=0, atol=0)
    torch.testing.assert_close(fresh.transformer.h[0].attn.c_proj.lora_B, head.lora_B, rtol=0, atol=0)
    torch.testing.assert_close(_logits(fresh), _logits(adapted), rtol=0, atol=0)


def test_a_failed_write_leaves_the_previous_adapter_and_no_temporary_file(tmp_path: Path, monkeypatch) -> None:
    adapted, _ = _roberta_adapted()
    lora.save_adapter(adapted, tmp_path, metadata={"step": 1})
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}

    def disk_full(_fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("lora.files.os.fsync", disk_full)
    _train_like(adapted, seed=5)
    with pytest.raises(OSError, match="No space left"):
        lora.save_adapter(adapted, tmp_path, metadata={"step": 2})
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before


def test_save_refuses_bad_arguments(tmp_path: Path) -> None:
    adapted, _ = _roberta_adapted()
    with pytest.raises(lora.LoRAConfigError, match="metadata must be a JSON-serialisable mapping"):
        lora.save_adapter(adapted, tmp_path, metadata={"when": object()})
    with pytest.raises(lora.LoRAConfigError, match=r"metadata must be .*Out of range float values"):
        lora.save_adapter(adapted, tmp_path, metadata={"loss": float("nan")})
    with pytest.raises(lora.LoRAConfigError, match="bias must be one of 'none', 'all', 'lora_only'; got 'some'"):
        lora.save_adapter(adapted, tmp_path, bias="some")
    with pytest.raises(lora.LoRAConfigError, match=r"module 'head' matched no module"):
        lora.save_adapter(adapted, tmp_path, modules_to_save=["head"])
    assert not list(tmp_path.iterdir())


# -- refusals on load ------------------------------------------------------------------------


@pytest.fixture
def roberta_adapter(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    adapted, base_state = _roberta_adapted()
    directory = tmp_path / "adapter"
    lora.save_adapter(adapted, directory, modules_to_save=["classifier"])
    return directory, base_state


def _roberta(base_state=None, **overrides) -> nn.Module:
    torch.manual_seed(0)
    model = RobertaForSequenceClassification(tiny_roberta_config(**overrides)).eval()
    if base_state is not None:
        model.load_state_dict(base_state)
    return model


def test_missing_and_corrupt_files_are_named(roberta_adapter, tmp_path: Path) -> None:
    directory, base_state = roberta_adapter
    model = _roberta(base_state)
    with pytest.raises(lora.AdapterMismatchError, match=r"no adapter in .*nowhere: adapter_config\.json is missing"):
        lora.load_adapter(model, tmp_path / "nowhere")

    payload = (directory / TENSORS_FILE).read_bytes()
    tampered = bytearray(payload)
    tampered[-1] ^= 0xFF  # one bit pattern in the last tensor's data
    (directory / TENSORS_FILE).write_bytes(bytes(tampered))
    with pytest.raises(lora.AdapterMismatchError, match=r"is corrupt: adapter\.safetensors has sha256"):
        lora.load_adapter(model, directory)
    (directory / TENSORS_FILE).unlink()
    with pytest.raises(lora.AdapterMismatchError, match=r"adapter\.safetensors is missing from"):
        lora.load_adapter(model, directory)

    text = (directory / CONFIG_FILE).read_text()
    (directory / CONFIG_FILE).write_text(text[: len(text) // 2])
    with pytest.raises(lora.AdapterMismatchError, match=r"is corrupt: adapter_config\.json is not valid JSON"):
        lora.load_adapter(model, directory)
    assert not list(lora.named_lora_layers(model))


def test_read_adapter_returns_the_saved_matrices_and_records_without_a_model(roberta_adapter) -> None:
    from lora.adapter import read_adapter

    directory, _ = roberta_adapter
    adapted, _ = _roberta_adapted()  # the same seeds give the same matrices that were saved
    document, tensors = read_adapter(directory)
    layers = dict(lora.named_lora_layers(adapted))
    assert document["layers"].keys() == layers.keys()
    for name, layer in layers.items():
        assert document["layers"][name]["r"] == layer.r
        assert torch.equal(tensors[f"{name}.lora_A"], layer.lora_A) and torch.equal(
            tensors[f"{name}.lora_B"], layer.lora_B
        )
    (directory / TENSORS_FILE).write_bytes(b"not safetensors")
    with pytest.raises(lora.AdapterMismatchError, match=r"is corrupt: adapter\.safetensors has sha256"):
        read_adapter(directory)


def test_unknown_format_version_and_peft_directories_are_refused(roberta_adapter) -> None:
    directory, base_state = roberta_adapter
    config = json.loads((directory / CONFIG_FILE).read_text())
    (directory / CONFIG_FILE).write_text(json.dumps({**config, "format_version": 99}))
    with pytest.raises(lora.AdapterMismatchError, match=r"format version 99 .* not supported: .* reads versions 1, 2"):
        lora.load_adapter(_roberta(base_state), directory)
    (directory / CONFIG_FILE).write_text(json.dumps({"peft_type": "LORA", "r": 8}))
    with pytest.raises(lora.AdapterMismatchError, match=r"holds a PEFT adapter .* peft\.PeftModel\.from_pretrained"):
        lora.load_adapter(_roberta(base_state), directory)


def _garbage_tensors(directory: Path, config: dict) -> dict:
    garbage = b"not a safetensors file"
    (directory / TENSORS_FILE).write_bytes(garbage)
    return {**config, "tensors_sha256": hashlib.sha256(garbage).hexdigest()}


def _relisted(_directory: Path, config: dict) -> dict:
    key = "classifier.out_proj.bias"
    return {**config, "tensors": {**config["tensors"], key: {"shape": [4], "dtype": "float32"}}}


def _unknown_base(_directory: Path, config: dict) -> dict:
    # Without a recorded base type, the layout comes from the module found: nn.Linear, not fan_in_fan_out.
    name = "roberta.encoder.layer.0.attention.self.query"
    record = {**config["layers"][name], "base_layer_type": None, "fan_in_fan_out": True}
    return {**config, "layers": {**config["layers"], name: record}}


MALFORMED = [
    (lambda d, c: [c], r"is corrupt: adapter_config\.json holds a list, not an object"),
    (lambda d, c: {**c, "format": "other"}, r"is not a lora-harness adapter config \(format='other'"),
    (lambda d, c: {k: v for k, v in c.items() if k != "layers"}, r"lacks the dict field 'layers'"),
    (
        lambda d, c: {**c, "layers": {"x": {"r": 2}}},
        r"the record of layer 'x' lacks layer_type, lora_alpha, use_rslora",
    ),
    (_garbage_tensors, r"is corrupt: adapter\.safetensors cannot be read"),
    (_relisted, r"does not hold the tensors listed: classifier\.out_proj\.bias"),
    (
        _unknown_base,
        r"injecting the recorded layer gave a different one: .*query: fan_in_fan_out=True in the",
    ),
]


def _resealed(config: object) -> object:
    """``config`` with checksums that match its content, as a buggy writer (not an editor) would leave it."""
    if isinstance(config, dict) and isinstance(config.get("checksums"), dict):
        return {**config, "checksums": seal(config)}
    return config


@pytest.mark.parametrize(("edit", "message"), MALFORMED)
def test_malformed_adapters_are_named(roberta_adapter, edit, message: str) -> None:
    directory, base_state = roberta_adapter
    config = json.loads((directory / CONFIG_FILE).read_text())
    (directory / CONFIG_FILE).write_text(json.dumps(_resealed(edit(directory, config))))
    model = _roberta(base_state)
    with pytest.raises(lora.AdapterMismatchError, match=message):
        lora.load_adapter(model, directory)
    assert not list(lora.named_lora_layers(model))


def test_another_architecture_is_refused_unless_not_strict(roberta_adapter) -> None:
    directory, base_state = roberta_adapter
    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(tiny_gpt2_config())
    with pytest.raises(
        lora.AdapterMismatchError,
        match=r"saved from a roberta model \(RobertaForSequenceClassification, None\) but is being loaded "
        r"into a gpt2 model \(GPT2LMHeadModel\)",
    ):
        lora.load_adapter(gpt2, directory)
    assert not list(lora.named_lora_layers(gpt2))

    # The encoder's LoRA layers fit a masked-LM model of the same base; its head is skipped without strict.
    masked = RobertaForMaskedLM(tiny_roberta_config())
    masked.roberta.load_state_dict({k.removeprefix("roberta."): v for k, v in base_state.items()}, strict=False)
    with pytest.raises(lora.AdapterMismatchError, match=r"\(RobertaForMaskedLM\); load it into the model class"):
        lora.load_adapter(masked, directory)
    lora.load_adapter(masked, directory, strict=False)
    assert len(list(lora.named_lora_layers(masked))) == 5


def test_a_larger_base_is_refused_by_weight_shape(roberta_adapter) -> None:
    directory, _ = roberta_adapter
    larger = _roberta(hidden_size=48, intermediate_size=96)  # "roberta-large" for a "roberta-base" adapter
    with pytest.raises(
        lora.AdapterMismatchError,
        match=r"roberta\.encoder\.layer\.0\.attention\.self\.query: the adapter was trained on a base weight "
        r"of shape \(32, 32\), the model's is \(48, 48\).* \(and 1 more\)\. Load it into the base model",
    ):
        lora.load_adapter(larger, directory)
    assert not list(lora.named_lora_layers(larger))


def test_a_module_of_another_type_is_refused_even_with_the_same_weight_shape(tmp_path: Path) -> None:
    adapted = nn.Sequential(nn.Linear(4, 4))
    lora.inject_lora(adapted, ["0"], r=2)
    lora.save_adapter(adapted, tmp_path)
    with pytest.raises(
        lora.AdapterMismatchError,
        match=r"0: the adapter adapts a torch\.nn\.modules\.linear\.Linear, the model has a "
        r"transformers\.pytorch_utils\.Conv1D",
    ):
        lora.load_adapter(nn.Sequential(Conv1D(4, 4)), tmp_path)


def test_existing_lora_layers_with_other_settings_are_refused(roberta_adapter) -> None:
    directory, base_state = roberta_adapter
    model = _roberta(base_state)
    lora.inject_lora(model, ["Wq", "Wv"], r=8, lora_alpha=8)
    with pytest.raises(
        lora.AdapterMismatchError,
        match=r"roberta\.encoder\.layer\.0\.attention\.self\.query: r=4 in the adapter, 8 in the model",
    ):
        lora.load_adapter(model, directory)


def test_uncovered_lora_layers_are_missing_keys(roberta_adapter) -> None:
    directory, base_state = roberta_adapter
    model = _roberta(base_state)
    lora.inject_lora(model, ["Wk"], r=2)
    key_layer = model.roberta.encoder.layer[0].attention.self.key
    before = key_layer.lora_A.detach().clone()
    with pytest.raises(
        lora.AdapterMismatchError,
        match=r"lacks 4 tensor\(s\) of the model's LoRA layers: "
        r"roberta\.encoder\.layer\.0\.attention\.self\.key\.lora_A, .*pass strict=False",
    ):
        lora.load_adapter(model, directory)
    assert [name for name, _ in lora.named_lora_layers(model)] == [
        f"roberta.encoder.layer.{i}.attention.self.key" for i in (0, 1)
    ]  # the injections of the failed load were undone
    lora.load_adapter(model, directory, strict=False)
    assert len(list(lora.named_lora_layers(model))) == 7 and torch.equal(key_layer.lora_A, before)


def test_tensors_without_a_place_are_unexpected_keys(roberta_adapter) -> None:
    directory, base_state = roberta_adapter
    shallow = _roberta(num_hidden_layers=1)
    shallow.load_state_dict(base_state, strict=False)  # the first layer of the same pretrained base
    with pytest.raises(
        lora.AdapterMismatchError,
        match=r"has 4 tensor\(s\) this model has no place for: "
        r"roberta\.encoder\.layer\.1\.attention\.self\.query\.lora_A, .*pass strict=False",
    ):
        lora.load_adapter(shallow, directory)
    assert not list(lora.named_lora_layers(shallow))
    lora.load_adapter(shallow, directory, strict=False)
    assert len(list(lora.named_lora_layers(shallow))) == 3


def test_a_head_of_another_shape_is_refused_and_injections_are_undone(roberta_adapter) -> None:
    directory, _ = roberta_adapter
    model = _roberta(num_labels=5)
    trainable_before = {name for name, p in model.named_parameters() if p.requires_grad}
    with pytest.raises(
        lora.AdapterMismatchError,
        match=r"shape mismatch .*classifier\.out_proj\.bias: \(3,\) in the adapter, \(5,\) in the model"
        r".*num_labels",
    ):
        lora.load_adapter(model, directory, strict=False)
    assert not list(lora.named_lora_layers(model))
    assert {name for name, p in model.named_parameters() if p.requires_grad} == trainable_before
