"""Loading a classifier: one line of our own about the new head instead of transformers' LOAD REPORT; a model
name or folder that does not exist is refused with the nearest known one."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from experiments import hub
from experiments.models import load_sequence_classifier, resolve_source
from experiments.synthetic import write_tiny_roberta

BODY_WEIGHT = "encoder.layer.0.attention.self.query.weight"


@pytest.fixture(autouse=True)
def _transformers_logs_reach_caplog(monkeypatch: pytest.MonkeyPatch) -> None:
    """transformers stops propagation at its root logger (outside CI), which would hide its LOAD REPORT here."""
    from transformers.utils import logging as transformers_logging

    monkeypatch.setattr(transformers_logging.get_logger(), "propagate", True)  # configures it first


def _messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno == level]


def test_the_new_head_is_one_info_line_and_no_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    source = write_tiny_roberta(tmp_path / "roberta")
    torch.manual_seed(7)
    with caplog.at_level(logging.INFO):
        load_sequence_classifier(str(source), num_labels=2)
    assert _messages(caplog, logging.INFO) == [
        "classifier is new: initialised from torch seed 7 (expected: the task head)"
    ]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or "LOAD REPORT" in r.getMessage()]


def test_a_missing_pretrained_weight_is_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    source = write_tiny_roberta(tmp_path / "roberta")
    weights = load_file(source / "model.safetensors")
    del weights[BODY_WEIGHT]
    save_file(weights, source / "model.safetensors", metadata={"format": "pt"})
    with caplog.at_level(logging.INFO):
        load_sequence_classifier(str(source), num_labels=2)
    assert _messages(caplog, logging.WARNING) == [
        f"1 pretrained weight(s) missing from the checkpoint, initialised at random instead: roberta.{BODY_WEIGHT}"
    ]


def test_the_report_still_shows_when_loading_fails(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """transformers' error about mismatched shapes points at the report, so it is not swallowed."""
    from transformers import RobertaForSequenceClassification

    from tests.tiny_models import tiny_roberta_config

    RobertaForSequenceClassification(tiny_roberta_config(num_labels=3)).save_pretrained(tmp_path / "three")
    source_logger = logging.getLogger("transformers.modeling_utils")
    filters = list(source_logger.filters)
    with caplog.at_level(logging.WARNING), pytest.raises(RuntimeError, match="ignore_mismatched_sizes"):
        load_sequence_classifier(str(tmp_path / "three"), num_labels=1)
    assert any("LOAD REPORT" in message for message in _messages(caplog, logging.WARNING))
    assert source_logger.filters == filters


def test_a_mistyped_folder_suggests_the_folder_beside_it(tmp_path: Path) -> None:
    (tmp_path / "minilm-l6-h384").mkdir()
    (tmp_path / "smollm2-135m").mkdir()
    with pytest.raises(FileNotFoundError) as refused:
        resolve_source(str(tmp_path / "minilm-l6-h38"))
    assert f"is not a folder (did you mean model.name_or_path={tmp_path / 'minilm-l6-h384'}?)" in str(refused.value)
    with pytest.raises(FileNotFoundError) as unknown:
        resolve_source(str(tmp_path / "zzzz"))
    assert "did you mean" not in str(unknown.value)


def test_a_name_the_hub_does_not_have_suggests_a_configured_one(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    monkeypatch.setattr(hub, "hub_reachable", lambda: True)
    monkeypatch.setattr(huggingface_hub, "repo_exists", lambda name: name == "gpt2-medium")
    hub.require_hub_model.cache_clear()
    with pytest.raises(FileNotFoundError) as refused:
        resolve_source("gpt2-medum")
    assert str(refused.value).startswith(
        "model.name_or_path=gpt2-medum is neither a local folder nor a model on the Hugging Face hub "
        "(did you mean model.name_or_path=gpt2-medium?)"
    )
    hub.require_hub_model("gpt2-medium")  # found: no error
    hub.require_hub_model.cache_clear()
