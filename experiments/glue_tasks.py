"""A GLUE task's facts (text fields, labels, metrics, splits), read from its ``conf/task`` entry.

Column names follow the standard GLUE TSV release (``download_glue_data.py``); label orders follow the
Hugging Face ``glue`` dataset so hub and TSV data give the same label ids.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["GlueTask", "TsvLayout", "task_from_config"]


@dataclass(frozen=True)
class TsvLayout:
    """Where the fields sit in a split's TSV: by header name, or by column index for headerless files."""

    text_columns: tuple[str | int, ...]
    label_column: str | int
    has_header: bool = True


@dataclass(frozen=True)
class GlueTask:
    """Everything the runner needs to know about one GLUE task."""

    name: str
    tsv_dir: str
    hub_config: str
    hub_text_fields: tuple[str, ...]
    labels: tuple[str, ...]  # empty for regression
    metrics: tuple[str, ...]
    main_metric: str
    layout: TsvLayout
    eval_splits: dict[str, str] = field(default_factory=dict)  # result name -> TSV file stem
    hub_eval_splits: dict[str, str] = field(default_factory=dict)  # result name -> hub split
    score_range: tuple[float, float] | None = None  # regression: the gold scores' range (STS-B: 0 to 5)

    @property
    def is_regression(self) -> bool:
        return not self.labels

    @property
    def num_labels(self) -> int:
        return 1 if self.is_regression else len(self.labels)

    @property
    def main_split(self) -> str:
        """The dev split the paper reports (MNLI: matched)."""
        return next(iter(self.eval_splits))


def task_from_config(cfg: Mapping[str, Any]) -> GlueTask:
    """Build a :class:`GlueTask` from its ``conf/task/<name>.yaml`` entry (the single source of task facts).

    Raises:
        ValueError: the task is not a GLUE task (e.g. ``task=e2e`` given to the GLUE runner).
    """
    if cfg.get("family", "glue") != "glue":
        raise ValueError(
            f"task={cfg.get('name')} is not a GLUE task; run it with its own runner (e.g. python -m experiments.e2e)"
        )
    tsv, score_range = cfg["tsv"], cfg.get("score_range")
    return GlueTask(
        name=cfg["name"],
        tsv_dir=cfg["tsv_dir"],
        hub_config=cfg["hub_config"],
        hub_text_fields=tuple(cfg["hub_text_fields"]),
        labels=tuple(str(label) for label in cfg["labels"]),
        metrics=tuple(cfg["metrics"]),
        main_metric=cfg["main_metric"],
        layout=TsvLayout(tuple(tsv["text_columns"]), tsv["label_column"], bool(tsv.get("has_header", True))),
        eval_splits=dict(cfg["eval_splits"]),
        hub_eval_splits=dict(cfg["hub_eval_splits"]),
        score_range=(float(score_range[0]), float(score_range[1])) if score_range else None,
    )
