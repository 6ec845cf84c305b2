"""GLUE examples from a local folder in the standard TSV layout or from the Hugging Face hub."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from experiments.glue_tasks import GlueTask
from experiments.hub import require_hub

__all__ = ["DataError", "Example", "GlueData", "load_glue", "read_tsv_split"]


class DataError(ValueError):
    """The data folder or a data file is missing or malformed."""


@dataclass(frozen=True)
class Example:
    """One GLUE example: one or two texts and a class id (or a float score for STS-B)."""

    texts: tuple[str, ...]
    label: int | float


@dataclass
class GlueData:
    """A task's training examples and its evaluation splits, keyed by result name."""

    train: list[Example]
    evals: dict[str, list[Example]]
    source: str
    skipped_rows: int = 0


def _parse_label(task: GlueTask, raw: str, where: str) -> int | float:
    raw = raw.strip()
    if task.is_regression:
        try:
            return float(raw)
        except ValueError:
            raise DataError(f"{where}: score {raw!r} is not a number (task {task.name})") from None
    if raw not in task.labels:
        raise DataError(
            f"{where}: label {raw!r} is not one of {', '.join(task.labels)} for task {task.name}; "
            "check that data.dir points at the right task folder"
        )
    return task.labels.index(raw)


def read_tsv_split(task: GlueTask, path: Path, skip_malformed: bool = False) -> tuple[list[Example], int]:
    """Read one GLUE TSV file (no quoting, as GLUE's own processors); return examples and skipped rows."""
    if not path.is_file():
        raise DataError(
            f"{path} not found: data.dir must hold {task.tsv_dir}/{path.name} in the standard GLUE layout "
            f"(<data.dir>/{task.tsv_dir}/{{train,dev}}.tsv), or leave data.dir unset to use the hub"
        )
    layout = task.layout
    examples: list[Example] = []
    skipped = 0
    with path.open(encoding="utf-8-sig", newline="") as handle:
        rows = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(rows, None) if layout.has_header else None
        if layout.has_header:
            if header is None:
                raise DataError(f"{path} is empty")
            missing = [c for c in (*layout.text_columns, layout.label_column) if c not in header]
            if missing:
                raise DataError(f"{path}: header lacks column(s) {missing}; found {header}")
            width = len(header)
            text_idx = [header.index(c) for c in layout.text_columns]  # type: ignore[arg-type]
            label_idx = header.index(layout.label_column)  # type: ignore[arg-type]
        else:
            width = max(*layout.text_columns, layout.label_column) + 1  # type: ignore[type-var]
            text_idx, label_idx = list(layout.text_columns), layout.label_column
        first_line = 2 if layout.has_header else 1
        for line_no, row in enumerate(rows, start=first_line):
            where = f"{path}:{line_no}"
            if len(row) != width:
                if skip_malformed:
                    skipped += 1
                    continue
                excerpt = "\\t".join(row)[:120]
                raise DataError(
                    f"{where}: malformed row, expected {width} tab-separated columns, found {len(row)}: "
                    f"{excerpt!r}. Fix the file, or set data.skip_malformed=true to skip such rows"
                )
            texts = tuple(row[i] for i in text_idx)  # type: ignore[index]
            examples.append(Example(texts, _parse_label(task, row[label_idx], where)))  # type: ignore[index]
    if not examples:
        raise DataError(f"{path} has no examples")
    return examples, skipped


def _from_folder(task: GlueTask, data_dir: Path, skip_malformed: bool) -> GlueData:
    if not data_dir.is_dir():
        raise DataError(
            f"data.dir={data_dir} does not exist. Point data.dir at a folder in the GLUE TSV layout "
            f"(<dir>/{task.tsv_dir}/train.tsv), e.g. data.dir=../shared/data/glue, "
            "or leave it null for the hub"
        )
    folder = data_dir / task.tsv_dir
    train, skipped = read_tsv_split(task, folder / "train.tsv", skip_malformed)
    evals = {}
    for name, stem in task.eval_splits.items():
        evals[name], more = read_tsv_split(task, folder / f"{stem}.tsv", skip_malformed)
        skipped += more
    return GlueData(train, evals, source=f"tsv:{folder}", skipped_rows=skipped)


def _from_hub(task: GlueTask, dataset: str) -> GlueData:
    require_hub(f"GLUE task {task.name} from the hub ({dataset})")
    import datasets

    splits = datasets.load_dataset(dataset, task.hub_config)

    def convert(split: str) -> list[Example]:
        rows = splits[split]
        labels = rows["label"]
        columns = [rows[f] for f in task.hub_text_fields]
        return [
            Example(tuple(col[i] for col in columns), float(y) if task.is_regression else int(y))
            for i, y in enumerate(labels)
        ]

    return GlueData(
        train=convert("train"),
        evals={name: convert(split) for name, split in task.hub_eval_splits.items()},
        source=f"hub:{dataset}/{task.hub_config}",
    )


def load_glue(
    task: GlueTask,
    data_dir: str | Path | None,
    hub_dataset: str = "nyu-mll/glue",
    skip_malformed: bool = False,
    max_train_examples: int | None = None,
) -> GlueData:
    """Load a task from ``data_dir`` (GLUE TSV layout) or, when it is None, from the hub."""
    data = _from_folder(task, Path(data_dir), skip_malformed) if data_dir else _from_hub(task, hub_dataset)
    if max_train_examples is not None:
        data.train = data.train[:max_train_examples]
    return data
