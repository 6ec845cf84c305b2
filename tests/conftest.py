"""Tiny Hugging Face models built from configs (no downloads) shared by the tests."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(min(2, torch.get_num_threads()))

from tests.tiny_models import tiny_gpt2_config, tiny_llama_config, tiny_roberta_config  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def datasets_cache_in_tmp(tmp_path_factory: pytest.TempPathFactory):
    """Runs with data.cache_dir=null tokenize into the datasets cache: the tests' (and their subprocesses') go to a
    temporary folder, never the user's."""
    import datasets.config

    folder = tmp_path_factory.mktemp("hf_datasets_cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_DATASETS_CACHE", str(folder))
        patch.setattr(datasets.config, "HF_DATASETS_CACHE", folder)
        yield folder


@pytest.fixture(autouse=True)
def restore_root_logging():
    """An in-process Hydra job configures the root logger with the stream pytest captured for that test; later
    tests would log into the closed stream, so each test gets the root logger back as it found it."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def tiny_roberta():
    from transformers import RobertaForSequenceClassification

    torch.manual_seed(0)
    return RobertaForSequenceClassification(tiny_roberta_config()).eval()


@pytest.fixture
def tiny_gpt2():
    from transformers import GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(tiny_gpt2_config()).eval()


@pytest.fixture
def tiny_llama():
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(tiny_llama_config()).eval()
