"""E2E NLG on a causal LM (the paper's Table 3): loss on the text only, beam search, the five official metrics."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn as nn
from datasets import Dataset

from experiments.e2e_data import e2e_data_fingerprint, load_e2e
from experiments.e2e_metrics.formats import (
    check_references,
    group_references_by_mr,
    write_hypotheses,
    write_references,
)
from experiments.lm import encode_prompt_target, generate, lm_collate, lm_loss_sum, target_tokens
from experiments.methods import Method
from experiments.models import load_causal_lm
from experiments.recipes import e2e_recipe
from experiments.tasks.base import TaskFamily
from experiments.tokenized import TokenCache, encode
from experiments.training import FitOutcome, to_device

__all__ = ["E2EFamily", "encode_pairs"]

logger = logging.getLogger(__name__)


def _encode_pair(pair: Mapping[str, str], tokenizer: Any, separator: str, max_length: int) -> dict[str, list[int]]:
    """One (MR, text) row as ``<MR><separator>`` prompt and `` <text>`` target (a map function)."""
    return encode_prompt_target(tokenizer, f"{pair['mr']}{separator}", f" {pair['text']}", max_length)


def encode_pairs(
    pairs: Dataset, tokenizer: Any, separator: str, max_length: int, split: str, cache: TokenCache | None = None
) -> list[dict]:
    """Encode a split of (MR, text) rows into training items; with ``cache``, once per input."""
    options = {"separator": separator, "max_length": max_length}
    return encode(
        pairs, _encode_pair, options, tokenizer, batched=False, split=split, cache=cache, code=[encode_prompt_target]
    )


class E2EFamily(TaskFamily):
    """E2E: per-epoch validation loss, then the final model decodes every test MR once and is scored."""

    family = "e2e"
    selects_best_epoch: ClassVar[bool] = False

    def data_fingerprint(self) -> str | None:
        return e2e_data_fingerprint(self.cfg["task"], self.cfg["data"])

    def load(self, device: torch.device) -> None:
        cfg = self.cfg
        self.device = device
        self.data = load_e2e(cfg["task"], cfg["data"])
        test = self.data.test
        self.test_mrs, self.test_references = group_references_by_mr(list(zip(test["mr"], test["text"], strict=True)))
        limit = cfg["data"].get("max_eval_mrs")
        if limit:
            self.test_mrs, self.test_references = self.test_mrs[:limit], self.test_references[:limit]
        check_references(self.test_references)  # a test set the scorer cannot read fails now, not after training
        separator, max_len = cfg["task"]["prompt_separator"], cfg["train"]["max_seq_length"]
        cache = self.token_cache(self.data.fingerprint)
        self.train_items = encode_pairs(self.data.train, self.tokenizer, separator, max_len, "train", cache)
        self.valid_items = encode_pairs(self.data.valid, self.tokenizer, separator, max_len, "valid", cache)
        pad_id = self.tokenizer.pad_token_id
        self._collate = lm_collate(pad_id if pad_id is not None else self.tokenizer.eos_token_id)
        self._train_loss = lm_loss_sum(cfg["train"]["label_smoothing"])
        self._valid_loss = lm_loss_sum(0.0)
        logger.info(
            "e2e: %s training pairs, %s validation pairs, %s test pairs",
            *(f"{len(split):,}" for split in (self.train_items, self.valid_items, self.data.test)),
        )

    def build_model(self) -> nn.Module:
        model_cfg = self.cfg["model"]
        return load_causal_lm(
            model_cfg["name_or_path"],
            model_cfg["dtype"],
            model_cfg.get("attn_implementation"),
            model_cfg.get("gguf_file"),
        )

    def collate(self, items: list[Any]) -> dict[str, torch.Tensor]:
        return self._collate(items)

    def loss_sum(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._train_loss(model, batch)

    def item_count(self, item: Any) -> int:
        return target_tokens(item)

    def evaluate(self, model: nn.Module, epoch: int) -> dict[str, Any]:
        """Mean next-token loss on the validation texts (no smoothing) and its perplexity."""
        batch_size, items = self.cfg["train"]["eval_batch_size"], self.valid_items
        total = torch.zeros((), dtype=torch.float64, device=self.device)  # read once: a read per batch would stall
        for start in range(0, len(items), batch_size):
            batch = to_device(self.collate(items[start : start + batch_size]), self.device)
            total += self._valid_loss(model, batch).detach().double()
        mean = float(total) / max(sum(target_tokens(item) for item in items), 1)
        return {"valid_loss": mean, "valid_perplexity": float(torch.exp(torch.tensor(mean)))}

    def finish(self, model: nn.Module, outcome: FitOutcome, run_dir: Path) -> dict[str, Any]:
        """Decode one text per unique test MR, write the official files, score all five metrics."""
        from experiments.e2e_metrics import JavaNotFoundError, JavaToolNotFoundError, score_e2e

        cfg, decode = self.cfg, self.cfg["decode"]
        mrs, references = self.test_mrs, self.test_references
        logger.info("decoding %d test MRs (%d beams), then scoring", len(mrs), decode["num_beams"])
        started = time.perf_counter()
        model.eval()
        bf16 = outcome.precision == "bf16"
        amp = torch.autocast(self.device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
        with torch.no_grad(), amp:
            hypotheses = generate(
                model,
                self.tokenizer,
                [f"{mr}{cfg['task']['prompt_separator']}" for mr in mrs],
                self.device,
                num_beams=decode["num_beams"],
                length_penalty=decode["length_penalty"],
                no_repeat_ngram_size=decode["no_repeat_ngram_size"],
                max_new_tokens=decode["max_new_tokens"],
                batch_size=decode["batch_size"],
            )
        decode_time = time.perf_counter() - started
        hyp_path, ref_path = Path(run_dir) / "predictions.txt", Path(run_dir) / "references.txt"
        write_hypotheses(hyp_path, hypotheses)
        write_references(ref_path, references)
        try:
            scores: dict[str, float] | None = score_e2e(hypotheses, references)
        except (JavaNotFoundError, JavaToolNotFoundError) as error:  # e.g. a GPU machine without a JRE
            scores = None
            logger.warning(
                "scoring pending (%s); score later with python -m experiments.e2e_eval --run %s", error, run_dir
            )
        main = self.main_metric
        return {
            "main_metric": main,
            "main_metric_value": scores.get(main) if scores else None,
            "metrics": {
                "per_epoch": outcome.history,
                "test": scores,
                "best": scores,
                "last": scores,
                "best_epoch": outcome.history[-1]["epoch"] if outcome.history else None,
            },
            "scoring_pending": scores is None,
            "data": {
                "source": self.data.source,
                "fingerprint": self.data.fingerprint,
                "train_pairs": len(self.train_items),
                "valid_pairs": len(self.valid_items),
                "test_mrs": len(mrs),
                "test_references": sum(len(r) for r in references),
            },
            "outputs": {"predictions": hyp_path.name, "references": ref_path.name},  # relative to the run dir
            "decode_time_s": round(decode_time, 2),
        }

    def recipe(self, method: Method) -> dict[str, Any]:
        return e2e_recipe(self.cfg["model"]["recipe"], method.recipe, self.cfg["preset"]["name"]).as_dict()

    def headline(self, result: Mapping[str, Any]) -> str:
        scores = result["metrics"].get("test") or {}
        return " ".join(f"{k} {v:.4f}" for k, v in scores.items()) or "scores pending"

    def extra_hyperparameters(self) -> dict[str, Any]:
        return {"label_smoothing": self.cfg["train"]["label_smoothing"], **self.cfg["decode"]}
