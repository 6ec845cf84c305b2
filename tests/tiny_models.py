"""Tiny Hugging Face model configs (hidden 32, 2 layers) so tests need no downloads."""

from __future__ import annotations


def tiny_roberta_config(**overrides):
    from transformers import RobertaConfig

    values = {
        "vocab_size": 120,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": 66,
        "type_vocab_size": 1,
        "pad_token_id": 1,
        "bos_token_id": 0,
        "eos_token_id": 2,
        "num_labels": 3,
    }
    values.update(overrides)
    return RobertaConfig(**values)


def tiny_gpt2_config(**overrides):
    from transformers import GPT2Config

    values = {
        "vocab_size": 120,
        "n_embd": 32,
        "n_layer": 2,
        "n_head": 2,
        "n_positions": 64,
        "bos_token_id": 0,
        "eos_token_id": 0,
        "pad_token_id": 0,
    }
    values.update(overrides)
    return GPT2Config(**values)


def tiny_llama_config(**overrides):
    from transformers import LlamaConfig

    values = {
        "vocab_size": 120,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 48,
        "max_position_embeddings": 64,
        "bos_token_id": 0,
        "eos_token_id": 0,
        "pad_token_id": 0,
    }
    values.update(overrides)
    return LlamaConfig(**values)
