"""Loading a classifier: one line of our own about the new head instead of transformers' LOAD REPORT."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from experiments.models import load_sequence_classifier
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
