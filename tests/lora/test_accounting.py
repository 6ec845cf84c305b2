"""Parameter counts for the paper's configurations, built on the meta device from their configs."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from transformers import GPT2Config, GPT2LMHeadModel, RobertaConfig, RobertaForSequenceClassification

import lora


def _roberta(large: bool) -> nn.Module:
    size = {
        "hidden_size": 1024,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "intermediate_size": 4096,
    }
    config = RobertaConfig(vocab_size=50265, max_position_embeddings=514, type_vocab_size=1, **(size if large else {}))
    with torch.device("meta"):
        return RobertaForSequenceClassification(config)


def _paper_lora_count(model: nn.Module, targets: list[str], r: int) -> lora.ParameterCount:
    lora.inject_lora(model, targets, r=r, lora_alpha=r)
    lora.mark_only_lora_as_trainable(model, trainable_modules=["classifier"])
    return lora.count_parameters(model)


def test_roberta_base_r8_wq_wv_is_294912() -> None:
    count = _paper_lora_count(_roberta(large=False), ["Wq", "Wv"], r=8)
    assert count.trainable == 294_912 == 12 * 2 * 8 * (768 + 768)
    assert count.lora == 294_912
    head = 768 * 768 + 768 + 768 * 2 + 2
    assert count.head_trainable == head and count.trainable_with_head == 294_912 + head


def test_roberta_large_r8_wq_wv_is_786432() -> None:
    assert _paper_lora_count(_roberta(large=True), ["Wq", "Wv"], r=8).trainable == 786_432


def test_gpt2_medium_r4_q_v_slices_is_393216() -> None:
    with torch.device("meta"):
        model = GPT2LMHeadModel(GPT2Config(n_embd=1024, n_layer=24, n_head=16))
    count = _paper_lora_count(model, ["Wq", "Wv"], r=4)
    assert count.trainable == 393_216 == 24 * 2 * 4 * (1024 + 1024)
    # The tied LM head is the input embedding: counted once, inside the total.
    assert count.total == sum(p.numel() for p in model.parameters())


def test_full_model_and_bitfit_counts(tiny_roberta) -> None:
    total = sum(p.numel() for p in tiny_roberta.parameters())
    head = sum(p.numel() for p in tiny_roberta.classifier.parameters())
    full = lora.count_parameters(tiny_roberta)
    assert (full.total, full.trainable, full.trainable_with_head, full.head_total) == (
        total,
        total - head,
        total,
        head,
    )
    for name, param in tiny_roberta.named_parameters():
        param.requires_grad = name.endswith("bias")
    biases = sum(p.numel() for n, p in tiny_roberta.named_parameters() if n.endswith("bias") and "classifier" not in n)
    assert lora.count_parameters(tiny_roberta).trainable == biases


def test_breakdown_and_summary(tiny_roberta) -> None:
    lora.inject_lora(tiny_roberta, ["Wq"], r=2)
    lora.mark_only_lora_as_trainable(tiny_roberta)
    count = lora.count_parameters(tiny_roberta)
    assert count.by_module["roberta.encoder.layer.0.attention.self.query"] == (
        2 * (32 + 32),
        32 * 32 + 32 + 128,
    )
    summary = count.summary()
    assert "roberta.encoder.layer.N.attention.self.query" in summary and "    2 " in summary


def test_a_head_name_that_matches_nothing_is_refused(tiny_roberta, tiny_gpt2) -> None:
    lora.inject_lora(tiny_roberta, ["Wq"], r=2)
    lora.mark_only_lora_as_trainable(tiny_roberta, trainable_modules=["classifier"])
    with pytest.raises(
        lora.LoRAConfigError,
        match=r"head_modules \['head'\] matched no module of RobertaForSequenceClassification, so its head would "
        r"be counted as trainable adapter parameters; .*top-level modules: classifier, roberta\)",
    ):
        lora.count_parameters(tiny_roberta, head_modules=["classifier", "head"])
    count = lora.count_parameters(tiny_roberta, head_modules=["classifier"])
    assert count.trainable == 2 * 2 * (32 + 32) and count.head_trainable > 0
    # The default names the heads of several architectures; a model has some of them or none.
    assert lora.count_parameters(tiny_roberta) == count
    assert lora.count_parameters(nn.Linear(2, 2)).head_total == 0
    # GPT-2's tied LM head has no parameter of its own, but it is a module: naming it is valid.
    assert lora.count_parameters(tiny_gpt2, head_modules=["lm_head"]).total == lora.count_parameters(tiny_gpt2).total
    assert lora.count_parameters(nn.Linear(2, 2), head_modules=()).head_total == 0
