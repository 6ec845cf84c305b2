"""Parameter accounting as the paper reports it: trainable counts exclude the task head.

The paper's "trainable parameters" column counts the adapter only; the classification head is trained
by every method but left out (RoBERTa-base r=8 on Wq, Wv: 294,912). :func:`count_parameters` reports
both, plus the total and a per-module breakdown.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch.nn as nn

from lora.errors import LoRAConfigError
from lora.trainable import in_modules

__all__ = ["DEFAULT_HEAD_MODULES", "ParameterCount", "count_parameters"]

# Task heads of HF models: sequence classification (BERT/RoBERTa "classifier", GPT/Llama "score"),
# extractive QA, and language-model heads.
DEFAULT_HEAD_MODULES: tuple[str, ...] = ("classifier", "score", "qa_outputs", "lm_head")


@dataclass(frozen=True)
class ParameterCount:
    """Trainable and total parameter counts of a model, with its task head counted separately."""

    total: int
    trainable: int
    trainable_with_head: int
    lora: int
    head_total: int
    head_trainable: int
    by_module: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def trainable_fraction(self) -> float:
        """Trainable (head excluded) over all parameters."""
        return self.trainable / self.total if self.total else 0.0

    def summary(self) -> str:
        """A short table of the modules that train, with layer indices collapsed to ``N``."""
        grouped: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for name, (trainable, _total) in self.by_module.items():
            if trainable:
                row = grouped[re.sub(r"\.\d+(?=\.|$)", ".N", name)]
                row[0] += 1
                row[1] += trainable
        lines = [f"{'module':<60} {'count':>5} {'trainable':>12}"]
        lines += [f"{name:<60} {n:>5} {params:>12,}" for name, (n, params) in sorted(grouped.items())]
        lines.append(
            f"trainable {self.trainable:,} (head excluded; {self.trainable_with_head:,} with head) "
            f"of {self.total:,} = {100 * self.trainable_fraction:.4f}%"
        )
        return "\n".join(lines)


def _check_heads(model: nn.Module, head_modules: Sequence[str]) -> None:
    """Refuse a head name that matches no module: its parameters would silently count as the adapter's."""
    names = [name for name, _ in model.named_modules() if name]
    absent = [m for m in head_modules if not any(name == m or name.endswith(f".{m}") for name in names)]
    if absent:
        top = sorted({name.split(".", 1)[0] for name in names})
        raise LoRAConfigError(
            f"head_modules {absent!r} matched no module of {type(model).__name__}, so its head would be counted "
            f"as trainable adapter parameters; name the head's module or a dotted suffix of it (top-level "
            f"modules: {', '.join(top)}), or pass head_modules=() for a model without a head"
        )


def count_parameters(model: nn.Module, head_modules: Sequence[str] | None = None) -> ParameterCount:
    """Count ``model``'s parameters (shared ones once), separating the task head.

    Args:
        model: any module; counts work on the meta device, so paper-sized models need no memory.
        head_modules: module names (or dotted name components) that form the task head; each must
            match a module. Default: :data:`DEFAULT_HEAD_MODULES`, the heads of several architectures,
            of which a model has some or none.

    Raises:
        LoRAConfigError: a given entry of ``head_modules`` matches no module.
    """
    if head_modules is None:
        head_modules = DEFAULT_HEAD_MODULES
    else:
        _check_heads(model, head_modules)
    total = trainable = lora = head_total = head_trainable = 0
    by_module: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for name, param in model.named_parameters():
        n = param.numel()
        owner = name.rpartition(".")[0]
        by_module[owner][1] += n
        total += n
        in_head = in_modules(name, head_modules)
        head_total += n if in_head else 0
        lora += n if name.rpartition(".")[2].startswith("lora_") else 0
        if not param.requires_grad:
            continue
        by_module[owner][0] += n
        if in_head:
            head_trainable += n
        else:
            trainable += n
    return ParameterCount(
        total=total,
        trainable=trainable,
        trainable_with_head=trainable + head_trainable,
        lora=lora,
        head_total=head_total,
        head_trainable=head_trainable,
        by_module={name: (t, n) for name, (t, n) in by_module.items()},
    )
