"""What each method trains beside its own tensors (the new head only), and how LoRA runs in evaluation."""

from __future__ import annotations

import pytest
import torch

import lora
from experiments.methods import METHODS, apply_method, get_method
from experiments.training import store_frozen_matmul_params

LORA = {"name": "lora", "r": 4, "lora_alpha": 8, "targets": ["Wq", "Wv"]}


def _tiny_bert(dropout: float = 0.1):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=50,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    return BertForSequenceClassification(config)


def _trainable(model) -> set[str]:
    return {name for name, param in model.named_parameters() if param.requires_grad}


@pytest.mark.parametrize("method", [LORA, {"name": "bitfit"}])
def test_the_pretrained_pooler_stays_frozen_unless_asked(method) -> None:
    default = _tiny_bert()
    apply_method(default, method, ["classifier"])
    assert {"classifier.weight", "classifier.bias"} <= _trainable(default)
    assert "bert.pooler.dense.weight" not in _trainable(default)

    with_pooler = _tiny_bert()
    counts = apply_method(with_pooler, method, ["classifier"], train_pooler=True).counts
    assert "bert.pooler.dense.weight" in _trainable(with_pooler)
    pooler_weights = 32 * 32
    assert counts.trainable - apply_method(_tiny_bert(), method, ["classifier"]).counts.trainable >= pooler_weights


def test_train_pooler_on_a_model_without_one_is_refused(tiny_roberta) -> None:
    with pytest.raises(ValueError, match=r"model.train_pooler=true, but RobertaForSequenceClassification has no"):
        apply_method(tiny_roberta, LORA, ["classifier"], train_pooler=True)


def test_bitfit_on_a_model_without_biases_is_refused_by_name(tiny_llama) -> None:
    with pytest.raises(ValueError, match=r"method=bitfit trains bias terms, and LlamaForCausalLM has none"):
        apply_method(tiny_llama, {"name": "bitfit"}, [])


def test_evaluation_runs_the_training_forward_in_bf16() -> None:
    """eval() leaves LoRA unmerged: a merged W0 + dW rounded to bf16 would score another function."""
    model = _tiny_bert(dropout=0.0)
    apply_method(model, LORA, ["classifier"])
    with torch.no_grad():
        for _, layer in lora.named_lora_layers(model):
            layer.lora_B.normal_(std=0.05)  # a trained-looking update
    store_frozen_matmul_params(model, torch.bfloat16)
    inputs = {"input_ids": torch.randint(0, 50, (4, 16))}
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        trained = model.train().bert(**inputs).last_hidden_state
        evaluated = model.eval().bert(**inputs).last_hidden_state
        lora.merge(model)
        merged = model.bert(**inputs).last_hidden_state
    assert torch.equal(evaluated, trained)
    assert not torch.equal(merged, trained)


def _roles(named_groups) -> dict[str, set[tuple[float, float]]]:
    """(lr, weight decay) per parameter role: LoRA A, LoRA B, head weight, head bias."""
    roles: dict[str, set[tuple[float, float]]] = {}
    for name, lr, decay in named_groups:
        role = next((r for r in ("lora_A", "lora_B") if r in name), None)
        role = role or ("head bias" if name.endswith("bias") else "head weight")
        roles.setdefault(role, set()).add((lr, decay))
    return roles


def test_loraplus_groups_equal_peft_create_loraplus_optimizer() -> None:
    """B (and, as in PEFT, every bias) learns ratio x faster; A and the head's weight at the base lr."""
    from peft import LoraConfig, get_peft_model
    from peft.optimizers import create_loraplus_optimizer

    config = {**LORA, "name": "loraplus", "loraplus_lr_ratio": 16.0, "lora_dropout": 0.0}
    ours = _tiny_bert()
    method = get_method(config)
    method.prepare(ours, ["classifier"])
    names = {id(p): n for n, p in ours.named_parameters()}
    mine = [
        (names[id(p)], g["lr"], g["weight_decay"]) for g in method.param_groups(ours, 1e-3, 0.1) for p in g["params"]
    ]

    peft_model = get_peft_model(
        _tiny_bert(), LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=["query", "value"])
    )
    optimizer = create_loraplus_optimizer(
        peft_model, torch.optim.AdamW, lr=1e-3, loraplus_lr_ratio=16.0, loraplus_weight_decay=0.1
    )
    peft_names = {id(p): n for n, p in peft_model.named_parameters()}
    theirs = [(peft_names[id(p)], g["lr"], g["weight_decay"]) for g in optimizer.param_groups for p in g["params"]]

    mine_roles, their_roles = _roles(mine), _roles(theirs)
    assert mine_roles["lora_B"] == their_roles["lora_B"] == {(1e-3 * 16, 0.1)}
    assert mine_roles["lora_A"] == their_roles["lora_A"] == {(1e-3, 0.1)}
    assert mine_roles["head weight"] == their_roles["head weight"] == {(1e-3, 0.1)}
    assert mine_roles["head bias"] == their_roles["head bias"] == {(1e-3 * 16, 0.0)}
    assert set(mine_roles) == set(their_roles)


def test_rslora_is_lora_with_rank_stabilised_scaling() -> None:
    model = _tiny_bert()
    get_method({**LORA, "name": "rslora"}).prepare(model, ["classifier"])
    layers = [layer for _, layer in lora.named_lora_layers(model)]
    assert layers and all(layer.scaling == pytest.approx(8 / 4**0.5) for layer in layers)


def test_every_registered_method_has_its_config_schema_and_display() -> None:
    from pathlib import Path

    from experiments.config import compose_config
    from experiments.schema import validate_config

    conf = Path(__file__).resolve().parents[2] / "conf" / "method"
    assert {path.stem for path in conf.glob("*.yaml")} == set(METHODS)
    assert (
        len({m.display.label for m in METHODS.values()})
        == len({m.display.order for m in METHODS.values()})
        == len(METHODS)
    )
    for name in METHODS:
        for family, task in (("glue", "task=rte"), ("e2e", "task=e2e")):
            typed = validate_config(compose_config(family, [f"method={name}", task]), family)
            assert type(typed.method) is METHODS[name].schema and typed.method.name == name
