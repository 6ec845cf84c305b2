"""E2E NLG data: the LoRA authors' ``MR||text`` files, the challenge's CSVs, or the hub; MR grouping.

Training uses every (MR, text) pair; evaluation generates one text per unique MR and scores it against
all references of that MR (the test set has 4,693 pairs over 630 MRs). Each split is a ``datasets.Dataset`` of
columns ``mr`` and ``text``; local files go through our readers, whose errors name file and line.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets import Dataset, Features, Value

from experiments.data_files import (
    DataError,
    check_limit,
    data_fingerprint,
    decode_utf8,
    files_fingerprint,
    take_first,
)
from experiments.e2e_metrics.formats import read_mr_text_file
from experiments.hub import require_hub
from experiments.results import portable_path

__all__ = ["E2EData", "e2e_data_fingerprint", "load_e2e", "read_challenge_csv", "read_lora_txt"]

SPLITS = ("train", "valid", "test")
_PAIR = Features({"mr": Value("string"), "text": Value("string")})


@dataclass
class E2EData:
    """The three splits (each a meaning representation and one human reference text per row), where they came
    from, and their content fingerprint (see e2e_data_fingerprint)."""

    train: Dataset
    valid: Dataset
    test: Dataset
    source: str
    fingerprint: str


def _pairs(pairs: Sequence[tuple[str, str]], path: Path | str) -> Dataset:
    if not pairs:
        raise DataError(f"{path} has no examples")
    mrs, texts = zip(*pairs, strict=True)
    return Dataset.from_dict({"mr": list(mrs), "text": list(texts)}, features=_PAIR)


def read_lora_txt(path: Path) -> Dataset:
    """Lines ``MR||text`` as in microsoft/LoRA examples/NLG/data/e2e (text tokenised, trailing space)."""
    if not path.is_file():
        raise DataError(f"{path} not found: data.dir must hold train.txt, valid.txt and test.txt (MR||text lines)")
    return _pairs(read_mr_text_file(path), path)


def _csv_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """Rows of a UTF-8 CSV with the line each starts on; csv's own errors (e.g. a runaway quote) name file and line."""
    rows = csv.reader(io.StringIO(decode_utf8(path.read_bytes(), path), newline=""))
    while True:
        line_no = rows.line_num + 1
        try:
            row = next(rows)
        except StopIteration:
            return
        except csv.Error as error:
            raise DataError(
                f"{path}:{line_no}: {error} (allowed: CSV fields under {csv.field_size_limit():,} characters); "
                "check the quoting from this line on: an unbalanced '\"' swallows the lines after it"
            ) from None
        yield line_no, row


def read_challenge_csv(path: Path) -> Dataset:
    """The E2E challenge release's CSVs (columns ``mr`` and ``ref``); blank lines are skipped.

    Raises:
        DataError: naming file and line, for a row with the wrong column count or an empty MR or reference.
    """
    if not path.is_file():
        raise DataError(f"{path} not found")
    rows = _csv_rows(path)
    _, header = next(rows, (1, []))
    if not header:
        raise DataError(f"{path}: empty file (allowed: a header 'mr,ref', then one row per pair); check the copy")
    if not {"mr", "ref"} <= set(header):
        raise DataError(f"{path}:1: header lacks 'mr' or 'ref' (found: {header}); point data.dir at the challenge CSVs")
    mr_idx, ref_idx = header.index("mr"), header.index("ref")
    pairs = []
    for line_no, row in rows:
        if not row:
            continue
        if len(row) != len(header):
            raise DataError(
                f"{path}:{line_no}: row has {len(row)} columns (allowed: {len(header)}, as in the header); fix the row"
            )
        mr, ref = row[mr_idx].strip(), row[ref_idx].strip()
        if not (mr and ref):
            empty = "MR" if not mr else "reference"
            raise DataError(f"{path}:{line_no}: empty {empty} (allowed: non-empty 'mr' and 'ref'); fix the row")
        pairs.append((mr, ref))
    return _pairs(pairs, path)


def _detect_format(folder: Path, files: Mapping[str, str], csv_files: Mapping[str, str]) -> str:
    if all((folder / name).is_file() for name in files.values()):
        return "lora_txt"
    if all((folder / name).is_file() for name in csv_files.values()):
        return "csv"
    raise DataError(
        f"data.dir={folder} holds neither the authors' files ({', '.join(files.values())}) nor the challenge "
        f"CSVs ({', '.join(csv_files.values())}); point data.dir at such a folder, e.g. ../shared/data/e2e"
    )


def _split_files(task: Mapping[str, Any], data: Mapping[str, Any]) -> tuple[str, dict[str, Path]]:
    """The format and the file of each split under ``data['dir']``; every file exists."""
    folder = Path(data["dir"]).expanduser()
    if not folder.is_dir():
        raise DataError(
            f"data.dir={folder} does not exist; point it at the E2E folder (train.txt, valid.txt, test.txt "
            "in MR||text lines, e.g. ../shared/data/e2e) or leave it null for the hub"
        )
    fmt = data.get("format", "auto")
    if fmt == "auto":
        fmt = _detect_format(folder, task["files"], task["csv_files"])
    if fmt not in ("lora_txt", "csv"):
        raise DataError(f"data.format must be auto, lora_txt or csv; got {fmt!r}")
    names = task["files"] if fmt == "lora_txt" else task["csv_files"]
    files = {split: folder / names[split] for split in SPLITS}
    for path in files.values():
        if not path.is_file():
            raise DataError(f"{path} not found: data.format={fmt} needs {', '.join(names.values())} in data.dir")
    return fmt, files


def _limits(data: Mapping[str, Any]) -> dict[str, int | None]:
    """The row limits the reader applies (hashed into the fingerprint); refuses non-positive ones."""
    keys = ("max_train_examples", "max_valid_examples")
    return {key: check_limit(f"data.{key}", data.get(key)) for key in keys}


def e2e_data_fingerprint(task: Mapping[str, Any], data: Mapping[str, Any]) -> str | None:
    """The fingerprint :func:`load_e2e` records, by hashing the files without parsing them.

    Cheap enough for a runner to compare with a finished run's before loading anything; None for the hub,
    whose fingerprint is known only once the dataset is loaded.
    """
    limits = _limits(data)
    if not data.get("dir"):
        return None
    fmt, files = _split_files(task, data)
    return files_fingerprint(files, {"format": fmt, **limits})


def _from_hub(dataset: str, splits: Mapping[str, str], fields: Mapping[str, str], limits: dict[str, Any]) -> E2EData:
    require_hub(f"E2E NLG from the hub ({dataset})")
    import datasets

    loaded = datasets.load_dataset(dataset)

    def convert(split: str) -> Dataset:
        rows = loaded[split]
        pairs = [(mr.strip(), text.strip()) for mr, text in zip(rows[fields["mr"]], rows[fields["text"]], strict=True)]
        return _pairs(pairs, f"{dataset} split {split}")

    digests = {split: loaded[splits[split]]._fingerprint for split in SPLITS}
    return E2EData(
        *(convert(splits[split]) for split in SPLITS),
        source=f"hub:{dataset}",
        fingerprint=data_fingerprint(digests, {"format": "hub", **limits}),
    )


def load_e2e(task: Mapping[str, Any], data: Mapping[str, Any]) -> E2EData:
    """Load the splits from ``data['dir']`` (format ``auto``, ``lora_txt`` or ``csv``) or the hub.

    Raises:
        DataError: a file is missing or a line is malformed (naming file and line).
        ValueError: a row limit is not a positive integer or None.
    """
    limits = _limits(data)
    if not data.get("dir"):
        loaded = _from_hub(data["hub_dataset"], task["hub_splits"], task["hub_fields"], limits)
    else:
        fmt, files = _split_files(task, data)
        fingerprint = files_fingerprint(files, {"format": fmt, **limits})
        reader = read_lora_txt if fmt == "lora_txt" else read_challenge_csv
        source = f"{fmt}:{portable_path(str(files['train'].parent))}"  # no machine path in the result
        loaded = E2EData(*(reader(files[split]) for split in SPLITS), source=source, fingerprint=fingerprint)
    loaded.train = take_first(loaded.train, limits["max_train_examples"])
    loaded.valid = take_first(loaded.valid, limits["max_valid_examples"])
    return loaded
