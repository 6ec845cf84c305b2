"""GLUE on an encoder (the paper's Table 2): sentence(-pair) classification and STS-B regression."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F
from datasets import Dataset
from tqdm.auto import tqdm

from experiments.glue_data import glue_data_fingerprint, load_glue
from experiments.glue_tasks import task_from_config
from experiments.methods import Method
from experiments.metrics import compute_metrics
from experiments.models import load_sequence_classifier
from experiments.recipes import glue_recipe
from experiments.runner import summarize_history
from experiments.tasks.base import TaskFamily
from experiments.tokenized import TokenCache, encode
from experiments.training import FitOutcome, to_device

__all__ = ["GlueFamily", "classification_loss_sum", "make_collate", "predict", "tokenize"]

logger = logging.getLogger(__name__)


def _encode_batch(
    batch: Mapping[str, list[Any]], tokenizer: Any, text_columns: list[str], max_length: int, regression: bool
) -> dict[str, list[Any]]:
    """A batch of single sentences or pairs, truncated to ``max_length`` tokens, with its labels (a map function)."""
    encoded = tokenizer(*(batch[column] for column in text_columns), truncation=True, max_length=max_length)
    labels = [float(label) if regression else int(label) for label in batch["label"]]
    return {**encoded, "labels": labels}


def tokenize(
    examples: Dataset,
    tokenizer: Any,
    max_length: int,
    regression: bool,
    split: str = "train",
    cache: TokenCache | None = None,
) -> list[dict]:
    """Encode a split (text columns, then ``label``) into training items; with ``cache``, once per input."""
    options = {
        "text_columns": [column for column in examples.column_names if column != "label"],
        "max_length": max_length,
        "regression": regression,
    }
    return encode(examples, _encode_batch, options, tokenizer, batched=True, split=split, cache=cache)


def make_collate(tokenizer: Any, regression: bool):
    """Pad a list of encoded examples to the longest (rounded up to a multiple of 8 for tensor cores).

    The same tensors as ``tokenizer.pad(..., pad_to_multiple_of=8)``, built from padded Python lists in one
    ``torch.tensor`` call per field: ``tokenizer.pad`` costs several milliseconds per batch, which on a GPU is a
    large share of a small encoder's training step.
    """
    pad_values = {"input_ids": tokenizer.pad_token_id, "token_type_ids": tokenizer.pad_token_type_id}
    left = tokenizer.padding_side == "left"
    dtype = torch.float32 if regression else torch.long

    def collate(items: list[dict]) -> dict[str, torch.Tensor]:
        width = -(-max(len(item["input_ids"]) for item in items) // 8) * 8
        batch = {}
        for key in items[0]:
            if key == "labels":
                continue
            pad = pad_values.get(key, 0)  # attention_mask (and any other mask) pads with 0
            rows = [
                [pad] * (width - len(item[key])) + item[key] if left else item[key] + [pad] * (width - len(item[key]))
                for item in items
            ]
            batch[key] = torch.tensor(rows, dtype=torch.long)
        batch["labels"] = torch.tensor([item["labels"] for item in items], dtype=dtype)
        return batch

    return collate


def classification_loss_sum(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Summed cross-entropy (classification) or squared error (regression: one output)."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = model(**inputs).logits.float()
    labels = batch["labels"]
    if logits.shape[-1] == 1:
        return F.mse_loss(logits.squeeze(-1), labels, reduction="sum")
    return F.cross_entropy(logits, labels, reduction="sum")


def predict(model: nn.Module, items: list[dict], collate, batch_size: int, device: torch.device, desc: str):
    """Predicted class ids (or scores for regression) and gold labels of one evaluation split."""
    predictions, labels = [], []
    for start in tqdm(range(0, len(items), batch_size), desc=desc, leave=False, dynamic_ncols=True):
        batch = to_device(collate(items[start : start + batch_size]), device)
        gold = batch.pop("labels")
        logits = model(**batch).logits.float()
        predictions.append(logits.squeeze(-1) if logits.shape[-1] == 1 else logits.argmax(-1))
        labels.append(gold)
    return torch.cat(predictions).cpu().tolist(), torch.cat(labels).cpu().tolist()


class GlueFamily(TaskFamily):
    """A GLUE task from local TSVs or the hub, scored on its dev split(s) after every epoch."""

    family = "glue"
    selects_best_epoch: ClassVar[bool] = True

    def __init__(self, cfg: Mapping[str, Any]) -> None:
        super().__init__(cfg)
        self.task = task_from_config(cfg["task"])
        self.eval_items: dict[str, list[dict]] = {}

    def data_fingerprint(self) -> str | None:
        data = self.cfg["data"]
        return glue_data_fingerprint(
            self.task, data["dir"], data["skip_malformed"], data["max_train_examples"], data["max_eval_examples"]
        )

    def load(self, device: torch.device) -> None:
        cfg, data_cfg, task = self.cfg, self.cfg["data"], self.task
        self.device = device
        self.data = load_glue(
            task,
            data_cfg["dir"],
            data_cfg["hub_dataset"],
            data_cfg["skip_malformed"],
            data_cfg["max_train_examples"],
            data_cfg["max_eval_examples"],
        )
        max_len, cache = cfg["train"]["max_seq_length"], self.token_cache(self.data.fingerprint)
        splits = {"train": self.data.train, **self.data.evals}
        items = {
            split: tokenize(examples, self.tokenizer, max_len, task.is_regression, split, cache)
            for split, examples in splits.items()
        }
        self.train_items = items.pop("train")
        self.eval_items = items
        self._collate = make_collate(self.tokenizer, task.is_regression)
        evaluations = ", ".join(f"{split} {len(items):,}" for split, items in self.eval_items.items())
        logger.info(
            "%s: %s training examples; evaluation examples: %s", self.name, f"{len(self.train_items):,}", evaluations
        )

    def build_model(self) -> nn.Module:
        model_cfg = self.cfg["model"]
        return load_sequence_classifier(
            model_cfg["name_or_path"], self.task.num_labels, model_cfg["dtype"], model_cfg.get("attn_implementation")
        )

    def collate(self, items: list[Any]) -> dict[str, torch.Tensor]:
        return self._collate(items)

    def loss_sum(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return classification_loss_sum(model, batch)

    def evaluate(self, model: nn.Module, epoch: int) -> dict[str, Any]:
        metrics: dict[str, Any] = {}
        batch_size = self.cfg["train"]["eval_batch_size"]
        for split, items in self.eval_items.items():
            predictions, labels = predict(model, items, self.collate, batch_size, self.device, f"eval {split}")
            for name, value in compute_metrics(self.task.metrics, predictions, labels).items():
                metrics[f"{split}/{name}"] = value
        metrics[self.task.main_metric] = metrics[f"{self.task.main_split}/{self.task.main_metric}"]
        return metrics

    def finish(self, model: nn.Module, outcome: FitOutcome, run_dir: Path) -> dict[str, Any]:
        summary = summarize_history(outcome.history, self.main_metric)
        return {
            "main_metric": self.main_metric,
            "main_metric_value": summary["best"][self.main_metric] if summary["best"] else None,
            "metrics": {"per_epoch": outcome.history, **summary},
            "data": {
                "source": self.data.source,
                "fingerprint": self.data.fingerprint,
                "train_examples": len(self.train_items),
                "eval_examples": {k: len(v) for k, v in self.eval_items.items()},
                "skipped_rows": self.data.skipped_rows,
            },
        }

    def recipe(self, method: Method) -> dict[str, Any]:
        cfg = self.cfg
        return glue_recipe(cfg["model"]["recipe"], method.recipe, self.name, cfg["preset"]["name"]).as_dict()

    def headline(self, result: Mapping[str, Any]) -> str:
        metrics, main = result["metrics"], self.main_metric
        best, last = metrics.get("best") or {}, metrics.get("last") or {}
        return (
            f"best {main} {best.get(main, float('nan')):.4f} (epoch {metrics.get('best_epoch')}), "
            f"last {last.get(main, float('nan')):.4f}"
        )
