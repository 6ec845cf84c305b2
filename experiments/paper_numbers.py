"""The paper's published numbers, as data the report sets beside ours.

Source: Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", arXiv:2106.09685 v2, transcribed in
../shared/PAPER.md; every table below names the paper's table it comes from. Units are the paper's: GLUE
scores x100; E2E BLEU, METEOR and ROUGE-L x100, NIST and CIDEr as printed. The paper does not say what its
"±" is; it is kept as printed. Rows the paper quotes from prior work say so in ``source``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "E2E_METRICS",
    "GLUE_TASKS",
    "TABLE2",
    "TABLE3",
    "TABLE5",
    "TABLE5_BUDGETS",
    "TABLE18",
    "PaperRow",
    "PaperScore",
    "paper_row",
]

GLUE_TASKS = ("mnli", "sst2", "mrpc", "cola", "qnli", "qqp", "rte", "stsb")  # Table 2's column order
E2E_METRICS = ("BLEU", "NIST", "METEOR", "ROUGE_L", "CIDEr")  # Table 3's column order


@dataclass(frozen=True)
class PaperScore:
    """One printed number and its printed "±" (None where the paper prints none)."""

    value: float
    spread: float | None = None


@dataclass(frozen=True)
class PaperRow:
    """One row of a paper table: which model and method, its trainable count as printed, its scores."""

    model: str  # the paper's model, by our config name (roberta-base, gpt2-medium, ...)
    method: str  # our method name: lora, full_ft, bitfit; "prefix_layer" has no counterpart here
    trainable: str  # as printed, e.g. "0.3M"
    scores: Mapping[str, PaperScore]
    source: str
    average: float | None = None  # Table 2's "Avg." column
    note: str = field(default="")


def _scores(names: tuple[str, ...], values: tuple[float, ...], spreads: tuple[float | None, ...] = ()):
    spreads = spreads or (None,) * len(values)
    return {n: PaperScore(v, s) for n, v, s in zip(names, values, spreads, strict=True)}


def _glue(values, spreads=()):
    return _scores(GLUE_TASKS, values, spreads)


def _e2e(values, spreads=()):
    return _scores(E2E_METRICS, values, spreads)


# Table 2: GLUE dev. LoRA rows are the median of 5 seeds (best epoch each); counts exclude the task head.
TABLE2: tuple[PaperRow, ...] = (
    PaperRow(
        "roberta-base",
        "full_ft",
        "125.0M",
        _glue((87.6, 94.8, 90.2, 63.6, 92.8, 91.9, 78.7, 91.2)),
        "Table 2, from prior work",
        86.4,
    ),
    PaperRow(
        "roberta-base",
        "bitfit",
        "0.1M",
        _glue((84.7, 93.7, 92.7, 62.0, 91.8, 84.0, 81.5, 90.8)),
        "Table 2, from prior work",
        85.2,
    ),
    PaperRow(
        "roberta-base",
        "lora",
        "0.3M",
        _glue((87.5, 95.1, 89.7, 63.4, 93.3, 90.8, 86.6, 91.5), (0.3, 0.2, 0.7, 1.2, 0.3, 0.1, 0.7, 0.2)),
        "Table 2",
        87.2,
    ),
    PaperRow(
        "roberta-large",
        "full_ft",
        "355.0M",
        _glue((90.2, 96.4, 90.9, 68.0, 94.7, 92.2, 86.6, 92.4)),
        "Table 2, from prior work",
        88.9,
    ),
    PaperRow(
        "roberta-large",
        "lora",
        "0.8M",
        _glue((90.6, 96.2, 90.9, 68.2, 94.9, 91.6, 87.4, 92.6), (0.2, 0.5, 1.2, 1.9, 0.3, 0.1, 2.5, 0.2)),
        "Table 2",
        89.0,
    ),
)

# Table 3: E2E NLG test set; LoRA rows are the mean of 3 seeds.
TABLE3: tuple[PaperRow, ...] = (
    PaperRow("gpt2-medium", "full_ft", "354.92M", _e2e((68.2, 8.62, 46.2, 71.0, 2.47)), "Table 3, from prior work"),
    PaperRow(
        "gpt2-medium",
        "prefix_layer",
        "0.35M",
        _e2e((69.7, 8.81, 46.1, 71.4, 2.49)),
        "Table 3, from prior work",
    ),
    PaperRow(
        "gpt2-medium",
        "lora",
        "0.35M",
        _e2e((70.4, 8.85, 46.8, 71.8, 2.53), (0.1, 0.02, 0.2, 0.1, 0.02)),
        "Table 3",
        note="r=4 on Wq,Wv of GPT-2 M is 393,216 parameters, not the printed 0.35M",
    ),
    PaperRow("gpt2-large", "full_ft", "774.03M", _e2e((68.5, 8.78, 46.0, 69.9, 2.45)), "Table 3, from prior work"),
    PaperRow(
        "gpt2-large",
        "lora",
        "0.77M",
        _e2e((70.4, 8.89, 46.8, 72.0, 2.47), (0.1, 0.02, 0.2, 0.2, 0.02)),
        "Table 3",
    ),
)

# Table 18: GPT-2 M LoRA on E2E by rank r (Wq, Wv). The paper prints METEOR and ROUGE-L as fractions
# (.469, .719); they are x100 here, like Table 3.
TABLE18: Mapping[int, Mapping[str, PaperScore]] = {
    1: _e2e((68.72, 8.72, 45.7, 70.5, 2.43)),
    2: _e2e((69.17, 8.74, 45.9, 70.5, 2.46)),
    4: _e2e((70.38, 8.84, 46.9, 71.9, 2.53)),
    8: _e2e((69.57, 8.75, 46.4, 72.0, 2.52)),
    16: _e2e((69.61, 8.75, 46.3, 71.8, 2.50)),
    32: _e2e((69.33, 8.77, 46.4, 71.1, 2.53)),
    64: _e2e((69.24, 8.72, 46.5, 71.8, 2.51)),
}

# Table 5: GPT-3 175B at a fixed budget of 18M parameters: (targets, r) -> MultiNLI and WikiSQL accuracy.
TABLE5_BUDGETS: tuple[tuple[tuple[str, ...], int], ...] = (
    (("Wq",), 8),
    (("Wk",), 8),
    (("Wv",), 8),
    (("Wo",), 8),
    (("Wq", "Wk"), 4),
    (("Wq", "Wv"), 4),
    (("Wq", "Wk", "Wv", "Wo"), 2),
)
TABLE5: Mapping[tuple[tuple[str, ...], int], Mapping[str, float]] = dict(
    zip(
        TABLE5_BUDGETS,
        (
            {"mnli": 91.0, "wikisql": 70.4},
            {"mnli": 90.8, "wikisql": 70.0},
            {"mnli": 91.0, "wikisql": 73.0},
            {"mnli": 91.3, "wikisql": 73.2},
            {"mnli": 91.3, "wikisql": 71.4},
            {"mnli": 91.3, "wikisql": 73.7},
            {"mnli": 91.7, "wikisql": 73.7},
        ),
        strict=True,
    )
)


def paper_row(table: tuple[PaperRow, ...], model: str, method: str) -> PaperRow | None:
    """The row of ``table`` for the paper's ``model`` and our ``method``, if the paper has one."""
    for row in table:
        if row.model == model and row.method == method:
            return row
    return None
