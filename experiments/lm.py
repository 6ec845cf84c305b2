"""Conditional language modelling: prompt/target encoding with loss on the target only, and decoding."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

__all__ = [
    "IGNORE_INDEX",
    "GeneratedNoRepeatNGram",
    "encode_prompt_target",
    "generate",
    "lm_collate",
    "lm_loss_sum",
    "target_tokens",
]

IGNORE_INDEX = -100


def _with_bos(tokenizer: Any, ids: list[int]) -> list[int]:
    bos = tokenizer.bos_token_id
    return ids if bos is None else [bos, *ids]


def encode_prompt_target(tokenizer: Any, prompt: str, target: str, max_length: int) -> dict[str, list[int]]:
    """``bos + prompt + target + eos`` with labels -100 on the prompt (the loss sees the target only).

    Truncation cuts the target, never the prompt, so every item still teaches a continuation.
    """
    prompt_ids = _with_bos(tokenizer, tokenizer(prompt, add_special_tokens=False)["input_ids"])
    target_ids = tokenizer(target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    room = max_length - len(prompt_ids)
    if room < 1:
        raise ValueError(f"a prompt of {len(prompt_ids)} tokens leaves no room in max_seq_length={max_length}")
    target_ids = target_ids[:room]
    return {
        "input_ids": prompt_ids + target_ids,
        "labels": [IGNORE_INDEX] * len(prompt_ids) + target_ids,
    }


def target_tokens(item: dict[str, list[int]]) -> int:
    """How many loss terms an item contributes (its target tokens), for token-weighted batches."""
    return sum(label != IGNORE_INDEX for label in item["labels"])


def lm_collate(pad_id: int) -> Callable[[list[dict]], dict[str, torch.Tensor]]:
    """Right-pad items to the longest, rounded up to a multiple of 8."""

    def collate(items: list[dict]) -> dict[str, torch.Tensor]:
        longest = max(len(item["input_ids"]) for item in items)
        width = -(-longest // 8) * 8
        ids = torch.full((len(items), width), pad_id, dtype=torch.long)
        labels = torch.full((len(items), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(items), width), dtype=torch.long)
        for row, item in enumerate(items):
            n = len(item["input_ids"])
            ids[row, :n] = torch.tensor(item["input_ids"])
            labels[row, :n] = torch.tensor(item["labels"])
            mask[row, :n] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    return collate


def lm_loss_sum(label_smoothing: float = 0.0) -> Callable[[nn.Module, dict[str, torch.Tensor]], torch.Tensor]:
    """Summed next-token cross-entropy over target tokens (with optional label smoothing)."""

    def loss_sum(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        shifted = logits[:, :-1].float()
        targets = batch["labels"][:, 1:]
        return F.cross_entropy(
            shifted.reshape(-1, shifted.shape[-1]),
            targets.reshape(-1),
            ignore_index=IGNORE_INDEX,
            reduction="sum",
            label_smoothing=label_smoothing,
        )

    return loss_sum


class GeneratedNoRepeatNGram:
    """A logits processor that bans a token completing an n-gram already in the generated continuation.

    Hugging Face's ``no_repeat_ngram_size`` counts the whole input of a decoder-only model, prompt
    included, so an E2E text could never copy a 4-token MR value ("5 out of 5", "Crowne Plaza Hotel").
    The authors' beam search bans repeats among generated tokens only; so does this, given where the
    continuation starts (every row of a left-padded batch starts at the same position).
    """

    def __init__(self, ngram_size: int, prompt_length: int) -> None:
        if ngram_size < 1:
            raise ValueError(f"decode.no_repeat_ngram_size must be >= 1 to ban repeats, got {ngram_size}")
        self.n = ngram_size
        self.prompt_length = prompt_length

    def banned_tokens(self, generated: Sequence[int]) -> set[int]:
        """Tokens that would repeat an n-gram of ``generated`` if appended to it."""
        n, tokens = self.n, list(generated)
        prefix = tuple(tokens[len(tokens) - n + 1 :]) if n > 1 else ()
        return {tokens[i + n - 1] for i in range(len(tokens) - n + 1) if tuple(tokens[i : i + n - 1]) == prefix}

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        for row, generated in enumerate(input_ids[:, self.prompt_length :].tolist()):
            banned = self.banned_tokens(generated)
            if banned:
                scores[row, sorted(banned)] = -float("inf")
        return scores


@contextmanager
def _dropped_mask_false_alarm_hidden() -> Iterator[None]:
    """Hide transformers' "We strongly recommend passing in an `attention_mask`", a false alarm in ``generate``.

    ``model.generate`` drops an all-ones mask (an unpadded batch) before the forward pass; GPT-2's forward,
    given no mask, then warns whenever the first or last token is ``config.pad_token_id``, which the BOS
    starting every prompt is when pad == bos == eos. A mask is passed, so only that message is dropped;
    ``pad_token_id`` or a GenerationConfig cannot stop it: the check reads ``model.config`` and a mask
    that no longer exists.
    """
    source = logging.getLogger("transformers.modeling_utils")

    def keep(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("We strongly recommend passing in an `attention_mask`")

    source.addFilter(keep)
    try:
        yield
    finally:
        source.removeFilter(keep)


@_dropped_mask_false_alarm_hidden()
def generate(
    model: nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    device: torch.device,
    *,
    num_beams: int,
    length_penalty: float,
    no_repeat_ngram_size: int,
    max_new_tokens: int,
    batch_size: int,
) -> list[str]:
    """Beam-search one continuation per prompt, cut at the first line break (E2E texts are one line).

    ``no_repeat_ngram_size`` bans repeated n-grams within the continuation only (0 turns it off).
    """
    from transformers import LogitsProcessorList

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    outputs: list[str] = []
    for start in tqdm(range(0, len(prompts), batch_size), desc="decode", leave=False, dynamic_ncols=True):
        encoded = [
            _with_bos(tokenizer, tokenizer(p, add_special_tokens=False)["input_ids"])
            for p in prompts[start : start + batch_size]
        ]
        width = max(len(ids) for ids in encoded)
        ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, seq in enumerate(encoded):  # left padding: generation continues from the right end
            ids[row, width - len(seq) :] = torch.tensor(seq)
            mask[row, width - len(seq) :] = 1
        generated = model.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            num_beams=num_beams,
            length_penalty=length_penalty,
            logits_processor=LogitsProcessorList(
                [GeneratedNoRepeatNGram(no_repeat_ngram_size, width)] if no_repeat_ngram_size else []
            ),
            max_new_tokens=max_new_tokens,
            early_stopping=True,
            do_sample=False,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=pad_id,
        )
        for row in generated[:, width:].tolist():
            text = tokenizer.decode(row, skip_special_tokens=True)
            outputs.append(text.strip().split("\n", 1)[0].strip())
    return outputs
