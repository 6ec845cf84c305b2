"""GLUE examples from a local folder in the standard TSV layout or from the Hugging Face hub, as ``datasets.Dataset``
splits with the hub's columns (the task's text fields, then ``label``), so both sources encode the same way.

Local files go through our own line reader, not ``datasets``' csv loader: GLUE's TSVs are unquoted (a lone ``"``
is text, as in GLUE's own processors), some lack a header, and a bad row must be reported by file and line before
anything is tokenized; the csv loader quotes, and its errors name neither.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from datasets import Dataset, Features, Value

from experiments.data_files import DataError, check_limit, data_fingerprint, files_fingerprint, read_lines, take_first
from experiments.glue_tasks import GlueTask
from experiments.hub import require_hub
from experiments.results import portable_path

__all__ = ["DataError", "GlueData", "glue_data_fingerprint", "load_glue", "read_tsv_split"]

SKIP_HINT = "set data.skip_malformed=true to skip and count such rows"


@dataclass
class GlueData:
    """A task's training examples and its evaluation splits, keyed by result name."""

    train: Dataset
    evals: dict[str, Dataset]
    source: str  # tsv:<folder> (portable: relative as given, else <local>/<name>) or hub:<dataset>/<config>
    fingerprint: str  # see glue_data_fingerprint
    skipped_rows: int = 0


def _features(task: GlueTask) -> Features:
    label = Value("float64") if task.is_regression else Value("int64")
    return Features({**{field: Value("string") for field in task.hub_text_fields}, "label": label})


def _parse_label(task: GlueTask, raw: str, path: Path, line_no: int) -> int | float:
    raw = raw.strip()
    if task.is_regression:
        low, high = task.score_range or (-math.inf, math.inf)
        try:
            score = float(raw)
        except ValueError:
            score = math.nan
        if math.isfinite(score) and low <= score <= high:
            return score
        allowed = f"finite numbers from {low:g} to {high:g}" if task.score_range else "finite numbers"
        problem = f"score {raw!r} is not a valid {task.name} score (allowed: {allowed})"
    elif raw in task.labels:
        return task.labels.index(raw)
    else:
        problem = f"label {raw!r} is not one of {', '.join(task.labels)} (the labels of task {task.name})"
    raise DataError(f"{path}:{line_no}: {problem}; fix the row, or check that data.dir holds task {task.name}'s files")


def _require_file(task: GlueTask, path: Path) -> None:
    if not path.is_file():
        raise DataError(
            f"{path} not found: data.dir must hold {task.tsv_dir}/{path.name} in the standard GLUE layout "
            f"(<data.dir>/{task.tsv_dir}/{{train,dev}}.tsv), or leave data.dir unset to use the hub"
        )


def read_tsv_split(task: GlueTask, path: Path, skip_malformed: bool = False) -> tuple[Dataset, int]:
    """Read one GLUE TSV file (no quoting, as GLUE's own processors); return its examples and skipped rows.

    Raises:
        DataError: naming file and line, for any row the task cannot use (see the module's tests).
    """
    _require_file(task, path)
    layout = task.layout
    lines = read_lines(path)
    if layout.has_header:
        _, first = next(lines, (0, ""))
        if not first:
            raise DataError(f"{path}: empty file (allowed: a header line, then one row per example); check the copy")
        header = first.split("\t")
        missing = [str(c) for c in (*layout.text_columns, layout.label_column) if c not in header]
        if missing:
            raise DataError(
                f"{path}:1: header lacks column(s) {', '.join(missing)} (found: {', '.join(header)}); "
                f"check that data.dir holds task {task.name}'s files"
            )
        width = len(header)
        text_idx = [header.index(c) for c in layout.text_columns]  # type: ignore[arg-type]
        label_idx = header.index(layout.label_column)  # type: ignore[arg-type]
    else:
        width = max(*layout.text_columns, layout.label_column) + 1  # type: ignore[type-var]
        text_idx, label_idx = list(layout.text_columns), layout.label_column
    texts: list[list[str]] = [[] for _ in text_idx]
    labels: list[int | float] = []
    skipped = 0
    for line_no, line in lines:
        row = line.split("\t")
        if not line or len(row) != width:
            if skip_malformed:
                skipped += 1
                continue
            found = "blank line" if not line else f"malformed row, {len(row)} columns: {line[:120]!r}"
            raise DataError(
                f"{path}:{line_no}: {found} (allowed: exactly {width} tab-separated columns); "
                f"fix the row, or {SKIP_HINT}"
            )
        for column, index in zip(texts, text_idx, strict=True):
            column.append(row[index])  # type: ignore[index]
        labels.append(_parse_label(task, row[label_idx], path, line_no))  # type: ignore[index]
    if not labels:
        detail = f"{skipped} malformed rows skipped" if skipped else "no rows"
        raise DataError(f"{path}: no examples ({detail}); check that the file holds task {task.name}'s data")
    columns = {**dict(zip(task.hub_text_fields, texts, strict=True)), "label": labels}
    return Dataset.from_dict(columns, features=_features(task)), skipped


def _split_files(task: GlueTask, data_dir: Path) -> dict[str, Path]:
    """The TSV of every split the task reads, keyed by split name (train, then the result names of eval splits)."""
    if not data_dir.is_dir():
        raise DataError(
            f"data.dir={data_dir} does not exist. Point data.dir at a folder in the GLUE TSV layout "
            f"(<dir>/{task.tsv_dir}/train.tsv), e.g. data.dir=../shared/data/glue, "
            "or leave it null for the hub"
        )
    folder = data_dir / task.tsv_dir
    files = {"train": folder / "train.tsv"} | {name: folder / f"{stem}.tsv" for name, stem in task.eval_splits.items()}
    for path in files.values():
        _require_file(task, path)
    return files


def _reading_options(
    task: GlueTask, skip_malformed: bool, max_train_examples: int | None, max_eval_examples: int | None
) -> dict[str, object]:
    """The options that change what a load yields (hashed into the fingerprint); refuses non-positive limits."""
    return {
        "task": task.name,
        "skip_malformed": skip_malformed,
        "max_train_examples": check_limit("data.max_train_examples", max_train_examples),
        "max_eval_examples": check_limit("data.max_eval_examples", max_eval_examples),
    }


def glue_data_fingerprint(
    task: GlueTask,
    data_dir: str | Path | None,
    skip_malformed: bool = False,
    max_train_examples: int | None = None,
    max_eval_examples: int | None = None,
) -> str | None:
    """The fingerprint :func:`load_glue` records, by hashing the files without parsing them.

    Cheap enough for a runner to compare with a finished run's before loading anything; None for the hub,
    whose fingerprint is known only once the dataset is loaded.
    """
    options = _reading_options(task, skip_malformed, max_train_examples, max_eval_examples)
    return files_fingerprint(_split_files(task, Path(data_dir)), options) if data_dir else None


def _from_folder(task: GlueTask, data_dir: Path, skip_malformed: bool, options: dict[str, object]) -> GlueData:
    files = _split_files(task, data_dir)
    fingerprint = files_fingerprint(files, options)
    skipped = 0
    splits = {}
    for name, path in files.items():
        splits[name], more = read_tsv_split(task, path, skip_malformed)
        skipped += more
    train = splits.pop("train")
    source = f"tsv:{portable_path(str(data_dir))}/{task.tsv_dir}"  # result.json names no machine's path
    return GlueData(train, splits, source, fingerprint, skipped_rows=skipped)


def _from_hub(task: GlueTask, dataset: str, options: dict[str, object]) -> GlueData:
    require_hub(f"GLUE task {task.name} from the hub ({dataset})")
    import datasets

    loaded = datasets.load_dataset(dataset, task.hub_config)
    splits = {"train": "train"} | task.hub_eval_splits

    def convert(split: str) -> Dataset:
        return loaded[split].select_columns([*task.hub_text_fields, "label"])

    return GlueData(
        train=convert("train"),
        evals={name: convert(split) for name, split in task.hub_eval_splits.items()},
        source=f"hub:{dataset}/{task.hub_config}",
        fingerprint=data_fingerprint({name: loaded[split]._fingerprint for name, split in splits.items()}, options),
    )


def load_glue(
    task: GlueTask,
    data_dir: str | Path | None,
    hub_dataset: str = "nyu-mll/glue",
    skip_malformed: bool = False,
    max_train_examples: int | None = None,
    max_eval_examples: int | None = None,
) -> GlueData:
    """Load a task from ``data_dir`` (GLUE TSV layout) or, when it is None, from the hub.

    Raises:
        DataError: a file is missing or a row is malformed (naming file and line).
        ValueError: a row limit is not a positive integer or None.
    """
    options = _reading_options(task, skip_malformed, max_train_examples, max_eval_examples)
    if data_dir:
        data = _from_folder(task, Path(data_dir), skip_malformed, options)
    else:
        data = _from_hub(task, hub_dataset, options)
    data.train = take_first(data.train, max_train_examples)
    data.evals = {name: take_first(examples, max_eval_examples) for name, examples in data.evals.items()}
    return data
