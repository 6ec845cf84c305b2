"""Injection into built models: targets, per-architecture paper names, pretrained weights kept."""

from __future__ import annotations

import loralib
import pytest
import torch
import torch.nn as nn
from transformers.pytorch_utils import Conv1D

import lora
from lora.architectures import detect_architecture


def _ids(batch: int = 2, length: int = 9) -> torch.Tensor:
    return torch.randint(3, 120, (batch, length), generator=torch.Generator().manual_seed(1))


def _logits(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    return model(input_ids=ids).logits


def _randomise_lora(model: nn.Module) -> None:
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.1)


def test_roberta_wq_wv_keeps_weights_and_outputs(tiny_roberta) -> None:
    ids = _ids()
    before = _logits(tiny_roberta, ids)
    keys_before = {k: v.shape for k, v in tiny_roberta.state_dict().items()}
    query_weight = tiny_roberta.roberta.encoder.layer[0].attention.self.query.weight
    names = lora.inject_lora(tiny_roberta, ["Wq", "Wv"], r=4, lora_alpha=8)
    assert names == [f"roberta.encoder.layer.{i}.attention.self.{m}" for i in (0, 1) for m in ("query", "value")]
    layer = tiny_roberta.roberta.encoder.layer[0].attention.self.query
    assert isinstance(layer, lora.Linear) and layer.weight is query_weight  # adopted, not copied
    assert not layer.weight.requires_grad
    torch.testing.assert_close(_logits(tiny_roberta, ids), before)  # B = 0: starts at the base
    keys_after = {k: v.shape for k, v in tiny_roberta.state_dict().items() if "lora_" not in k}
    assert keys_after == keys_before


def test_roberta_all_paper_matrices_and_ffn(tiny_roberta) -> None:
    names = lora.inject_lora(tiny_roberta, ["Wq", "Wk", "Wv", "Wo", "FFN"], r=2)
    suffixes = {name.split("layer.0.", 1)[1] for name in names if ".layer.0." in name}
    assert suffixes == {
        "attention.self.query",
        "attention.self.key",
        "attention.self.value",
        "attention.output.dense",
        "intermediate.dense",
        "output.dense",
    }
    assert not any(name.startswith("classifier") for name in names)


def test_gpt2_q_v_are_separate_slices_of_c_attn_with_k_untouched(tiny_gpt2) -> None:
    ids = _ids()
    before = _logits(tiny_gpt2, ids)
    names = lora.inject_lora(tiny_gpt2, ["Wq", "Wv"], r=2, lora_alpha=4)
    assert names == ["transformer.h.0.attn.c_attn", "transformer.h.1.attn.c_attn"]
    c_attn = tiny_gpt2.transformer.h[0].attn.c_attn
    assert isinstance(c_attn, lora.MergedLinear)
    assert c_attn.enable_lora == [True, False, True] and c_attn.fan_in_fan_out
    assert c_attn.lora_A.shape == (2 * 2, 32) and c_attn.lora_B.shape == (2 * 32, 2)
    torch.testing.assert_close(_logits(tiny_gpt2, ids), before)
    _randomise_lora(tiny_gpt2)
    delta = c_attn.delta_weight()  # (in, out) like Conv1D
    hidden = 32
    assert delta[:, :hidden].abs().sum() > 0
    assert torch.count_nonzero(delta[:, hidden : 2 * hidden]) == 0  # k slice untouched
    assert delta[:, 2 * hidden :].abs().sum() > 0


def test_gpt2_injection_equals_loralib_merged_linear(tiny_gpt2) -> None:
    """The paper's GPT-2 setup is loralib's MergedLinear(enable_lora=[T, F, T], fan_in_fan_out=True)."""
    lora.inject_lora(tiny_gpt2, ["Wq", "Wv"], r=2, lora_alpha=4, lora_dropout=0.1)
    _randomise_lora(tiny_gpt2)
    ours = tiny_gpt2.transformer.h[1].attn.c_attn
    theirs = loralib.MergedLinear(
        32, 96, r=2, lora_alpha=4, lora_dropout=0.1, enable_lora=[True, False, True], fan_in_fan_out=True
    )
    theirs.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(2, 5, 32)
    ours.train(), theirs.train()
    torch.manual_seed(3)
    expected = theirs(x)
    torch.manual_seed(3)
    torch.testing.assert_close(ours(x), expected, rtol=1e-5, atol=1e-6)


def test_gpt2_whole_c_attn_by_name(tiny_gpt2) -> None:
    lora.inject_lora(tiny_gpt2, ["c_attn"], r=2)
    layer = tiny_gpt2.transformer.h[0].attn.c_attn
    assert type(layer) is lora.Linear and layer.fan_in_fan_out and layer.lora_B.shape == (96, 2)


def test_llama_paper_names(tiny_llama) -> None:
    ids = _ids()
    before = _logits(tiny_llama, ids)
    names = lora.inject_lora(tiny_llama, ["Wq", "Wv", "FFN"], r=2)
    assert {n.rsplit(".", 1)[1] for n in names} == {"q_proj", "v_proj", "gate_proj", "up_proj", "down_proj"}
    assert len(names) == 2 * 5
    torch.testing.assert_close(_logits(tiny_llama, ids), before)


def test_architecture_detection(tiny_roberta, tiny_gpt2, tiny_llama) -> None:
    assert detect_architecture(tiny_roberta).name == "bert"
    assert detect_architecture(tiny_gpt2).name == "gpt2"
    assert detect_architecture(tiny_llama).name == "llama"
    assert detect_architecture(nn.Sequential(nn.Linear(2, 2))) is None


def test_regex_and_suffix_targets(tiny_roberta) -> None:
    names = lora.inject_lora(tiny_roberta, ["re:.*layer\\.1\\.attention\\.self\\.(query|key)"], r=2)
    assert names == [
        "roberta.encoder.layer.1.attention.self.key",
        "roberta.encoder.layer.1.attention.self.query",
    ]
    more = lora.inject_lora(tiny_roberta, ["out_proj"], r=2)
    assert more == ["classifier.out_proj"]


def test_unmatched_target_lists_module_names(tiny_roberta) -> None:
    with pytest.raises(lora.TargetNotFoundError, match=r"target 'quer' matched no module") as info:
        lora.inject_lora(tiny_roberta, ["quer"])
    assert "roberta.encoder.layer.N.attention.self.query (Linear)" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_paper_name_missing_from_architecture(tiny_roberta) -> None:
    with pytest.raises(lora.TargetNotFoundError, match=r"bert models have Wq, Wk, Wv, Wo, Wup, Wdown, not Wgate"):
        lora.inject_lora(tiny_roberta, ["Wgate"])


def test_unsupported_module_type_is_named(tiny_roberta) -> None:
    with pytest.raises(lora.UnsupportedModuleError, match=r"is a torch\.nn\.modules\.normalization\.LayerNorm"):
        lora.inject_lora(tiny_roberta, ["attention.output.LayerNorm"])


def test_double_injection_and_conflicting_targets_are_refused(tiny_gpt2) -> None:
    with pytest.raises(lora.LoRAConfigError, match="both as a whole and by slice"):
        lora.inject_lora(tiny_gpt2, ["Wq", "c_attn"])
    lora.inject_lora(tiny_gpt2, ["Wq"])
    with pytest.raises(lora.LoRAConfigError, match="already a LoRA layer"):
        lora.inject_lora(tiny_gpt2, ["Wv"])


def test_injection_into_plain_modules_embedding_and_conv() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(10, 4), nn.Conv1d(4, 4, 3, padding=1, groups=2), nn.Linear(4, 2))
    ids = torch.randint(0, 10, (2, 5))

    def run(m: nn.Module) -> torch.Tensor:
        h = m[0](ids).transpose(1, 2)
        return m[2](m[1](h).transpose(1, 2))

    before = run(model)
    names = lora.inject_lora(model, ["0", "1", "2"], r=2, lora_alpha=2)
    assert names == ["0", "1", "2"]
    assert isinstance(model[0], lora.Embedding) and isinstance(model[1], lora.Conv1d)
    assert model[1].conv.groups == 2 and model[1].conv.padding == (1,)
    torch.testing.assert_close(run(model), before)


def test_lora_dtype_override_keeps_base_dtype() -> None:
    model = nn.Sequential(nn.Linear(4, 4).to(torch.bfloat16))
    lora.inject_lora(model, ["0"], r=2, lora_dtype=torch.float32)
    assert model[0].weight.dtype == torch.bfloat16 and model[0].lora_A.dtype == torch.float32


def test_empty_targets_are_refused(tiny_roberta) -> None:
    with pytest.raises(lora.LoRAConfigError, match="targets is empty"):
        lora.inject_lora(tiny_roberta, [])


def test_injected_conv1d_type_is_gpt2_conv1d(tiny_gpt2) -> None:
    lora.inject_lora(tiny_gpt2, ["Wo"], r=2)
    assert tiny_gpt2.transformer.h[0].attn.c_proj.base_layer_type == f"{Conv1D.__module__}.Conv1D"


def test_inject_lora_layer_rebuilds_one_module_with_explicit_slices(tiny_gpt2) -> None:
    ids = _ids()
    before = _logits(tiny_gpt2, ids)
    weight = tiny_gpt2.transformer.h[0].attn.c_attn.weight
    layer = lora.inject_lora_layer(
        tiny_gpt2, "transformer.h.0.attn.c_attn", r=2, lora_alpha=4, enable_lora=[True, False, True]
    )
    assert tiny_gpt2.transformer.h[0].attn.c_attn is layer and layer.weight is weight
    assert isinstance(layer, lora.MergedLinear) and layer.enable_lora == [True, False, True]
    assert layer.fan_in_fan_out and layer.lora_A.shape == (4, 32) and not layer.training
    assert type(tiny_gpt2.transformer.h[1].attn.c_attn) is Conv1D  # exactly one module, no pattern
    torch.testing.assert_close(_logits(tiny_gpt2, ids), before)


def test_inject_lora_layer_takes_only_exact_names(tiny_roberta) -> None:
    with pytest.raises(lora.TargetNotFoundError, match=r"target 'attention\.self\.query' matched no module"):
        lora.inject_lora_layer(tiny_roberta, "attention.self.query")
    with pytest.raises(lora.LoRAConfigError, match="name is empty"):
        lora.inject_lora_layer(tiny_roberta, "")
    layer = lora.inject_lora_layer(tiny_roberta, "roberta.embeddings.word_embeddings", r=3)
    assert isinstance(layer, lora.Embedding) and layer.lora_A.shape == (3, 120)


def test_subclasses_with_their_own_forward_are_refused() -> None:
    """Gemma's embedding scales its output in forward; a plain LoRA embedding would drop the scale."""
    from transformers.models.gemma.modeling_gemma import GemmaTextScaledWordEmbedding

    model = nn.Sequential(GemmaTextScaledWordEmbedding(10, 4, 0, embed_scale=2.0))
    with pytest.raises(
        lora.UnsupportedModuleError,
        match=r"'0' is a transformers\.models\.gemma\.modeling_gemma\.GemmaTextScaledWordEmbedding, a "
        r"subclass of torch\.nn\.Embedding with its own forward .* silently drop",
    ):
        lora.inject_lora(model, ["0"], r=2)
    assert type(model[0]) is GemmaTextScaledWordEmbedding


def test_subclasses_without_their_own_forward_are_adapted() -> None:
    class TaggedConv(nn.Conv2d):
        pass

    class TaggedLinear(nn.Linear):
        pass

    torch.manual_seed(0)
    model = nn.Sequential(TaggedConv(2, 2, 3, padding=1), nn.Flatten(), TaggedLinear(2 * 5 * 5, 3))
    x = torch.randn(1, 2, 5, 5)
    before = model(x)
    lora.inject_lora(model, ["0", "2"], r=2)
    assert isinstance(model[0], lora.Conv2d) and isinstance(model[2], lora.Linear)
    assert model[0].base_layer_type.endswith("TaggedConv")
    torch.testing.assert_close(model(x), before)
