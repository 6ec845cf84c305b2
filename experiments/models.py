"""Pretrained models and tokenizers by hub name or local folder, failing fast and clearly offline."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from experiments.hub import model_suggestion, require_hub_model

__all__ = ["load_causal_lm", "load_sequence_classifier", "load_tokenizer", "resolve_source"]

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

logger = logging.getLogger(__name__)


def resolve_source(name_or_path: str) -> str:
    """A local folder as an absolute path; a hub name only if it is cached or the hub is reachable."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return str(path.resolve())
    if path.is_absolute() or name_or_path.startswith((".", "~")) or name_or_path.count("/") > 1:  # a hub id: [org/]name
        raise FileNotFoundError(
            f"model.name_or_path={name_or_path} is not a folder{model_suggestion(name_or_path)}; point it at a "
            "folder written by save_pretrained (e.g. ~/.cache/lora-models/minilm-l6-h384 from "
            "../shared/tools/fetch-models.sh)"
        )
    try:
        from huggingface_hub import try_to_load_from_cache

        if isinstance(try_to_load_from_cache(name_or_path, "config.json"), str):
            return name_or_path  # cached: from_pretrained can work offline
    except ImportError:  # pragma: no cover - huggingface_hub ships with transformers
        pass
    require_hub_model(name_or_path)
    return name_or_path


def _dtype(name: str) -> torch.dtype:
    if name not in _DTYPES:
        raise ValueError(f"model.dtype must be one of {', '.join(_DTYPES)}; got {name!r}")
    return _DTYPES[name]


def _gguf(gguf_file: str | None) -> dict[str, Any]:
    return {"gguf_file": gguf_file} if gguf_file else {}


def load_tokenizer(name_or_path: str, gguf_file: str | None = None) -> Any:
    """The model's own tokenizer (fast when available), also from a GGUF file in a local folder."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_source(name_or_path), **_gguf(gguf_file))


def load_sequence_classifier(
    name_or_path: str, num_labels: int, dtype: str = "float32", attn_implementation: str | None = None
) -> nn.Module:
    """An encoder with a fresh classification (``num_labels > 1``) or regression (``1``) head."""
    from transformers import AutoModelForSequenceClassification

    kwargs: dict[str, Any] = {"num_labels": num_labels, "dtype": _dtype(dtype)}
    kwargs["problem_type"] = "regression" if num_labels == 1 else "single_label_classification"
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    with _load_report_held():
        model, info = AutoModelForSequenceClassification.from_pretrained(
            resolve_source(name_or_path), output_loading_info=True, **kwargs
        )
    _log_new_weights(model, info)
    return model


@contextmanager
def _load_report_held() -> Iterator[None]:
    """Hold back transformers' LOAD REPORT table, showing it only if loading fails (its errors refer to it).

    For a classifier the table only says what ``_log_new_weights`` says in one line: the head is new.
    """
    source = logging.getLogger("transformers.modeling_utils")
    held: list[logging.LogRecord] = []

    def hold(record: logging.LogRecord) -> bool:
        if "LOAD REPORT" in record.getMessage():
            held.append(record)
            return False
        return True

    source.addFilter(hold)
    try:
        yield
    except BaseException:
        source.removeFilter(hold)
        for record in held:
            source.handle(record)
        raise
    finally:
        source.removeFilter(hold)


def _log_new_weights(model: nn.Module, loading_info: Mapping[str, Any]) -> None:
    """Say in one line which weights the checkpoint lacked; warn when any is not the task head.

    The head (everything outside the pretrained body ``model.base_model_prefix``) is new by design;
    a missing body weight means the encoder starts partly random, which no fine-tuning result survives.
    """
    body = f"{model.base_model_prefix}."
    missing = sorted(loading_info["missing_keys"])
    head = sorted({key.split(".")[0] for key in missing if not key.startswith(body)})
    if head:
        logger.info(
            "%s is new: initialised from torch seed %d (expected: the task head)", ", ".join(head), torch.initial_seed()
        )
    body_missing = [key for key in missing if key.startswith(body)]
    if body_missing:
        logger.warning(
            "%d pretrained weight(s) missing from the checkpoint, initialised at random instead: %s",
            len(body_missing),
            ", ".join(body_missing),
        )
    if loading_info.get("unexpected_keys"):
        unused = sorted({key.split(".")[0] for key in loading_info["unexpected_keys"]})
        logger.info("checkpoint weights left unused under: %s", ", ".join(unused))


def load_causal_lm(
    name_or_path: str, dtype: str = "float32", attn_implementation: str | None = None, gguf_file: str | None = None
) -> nn.Module:
    """A causal language model (GPT-2, Llama family, ...); a GGUF file is dequantised into ``dtype``."""
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": _dtype(dtype), **_gguf(gguf_file)}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    return AutoModelForCausalLM.from_pretrained(resolve_source(name_or_path), **kwargs)
