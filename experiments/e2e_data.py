"""E2E NLG data: the LoRA authors' ``MR||text`` files, the challenge's CSVs, or the hub; MR grouping.

Training uses every (MR, text) pair; evaluation generates one text per unique MR and scores it against
all references of that MR (the test set has 4,693 pairs over 630 MRs).
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.e2e_metrics.formats import read_mr_text_file
from experiments.glue_data import DataError
from experiments.hub import require_hub

__all__ = ["E2EData", "E2EPair", "load_e2e", "read_challenge_csv", "read_lora_txt"]


@dataclass(frozen=True)
class E2EPair:
    """A meaning representation and one human reference text for it."""

    mr: str
    text: str


@dataclass
class E2EData:
    """The three splits and where they came from."""

    train: list[E2EPair]
    valid: list[E2EPair]
    test: list[E2EPair]
    source: str


def read_lora_txt(path: Path) -> list[E2EPair]:
    """Lines ``MR||text`` as in microsoft/LoRA examples/NLG/data/e2e (text tokenised, trailing space)."""
    if not path.is_file():
        raise DataError(f"{path} not found: data.dir must hold train.txt, valid.txt and test.txt (MR||text lines)")
    pairs = [E2EPair(mr, text) for mr, text in read_mr_text_file(path)]
    if not pairs:
        raise DataError(f"{path} has no examples")
    return pairs


def read_challenge_csv(path: Path) -> list[E2EPair]:
    """The E2E challenge release's CSVs (columns ``mr`` and ``ref``)."""
    if not path.is_file():
        raise DataError(f"{path} not found")
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"mr", "ref"} <= set(reader.fieldnames):
            raise DataError(f"{path}: expected columns 'mr' and 'ref', found {reader.fieldnames}")
        return [E2EPair(row["mr"].strip(), row["ref"].strip()) for row in reader]


def _detect_format(folder: Path, files: Mapping[str, str], csv_files: Mapping[str, str]) -> str:
    if all((folder / name).is_file() for name in files.values()):
        return "lora_txt"
    if all((folder / name).is_file() for name in csv_files.values()):
        return "csv"
    raise DataError(
        f"data.dir={folder} holds neither the authors' files ({', '.join(files.values())}) nor the challenge "
        f"CSVs ({', '.join(csv_files.values())}); point data.dir at such a folder, e.g. ../shared/data/e2e"
    )


def _from_hub(dataset: str, splits: Mapping[str, str], fields: Mapping[str, str]) -> E2EData:
    require_hub(f"E2E NLG from the hub ({dataset})")
    import datasets

    loaded = datasets.load_dataset(dataset)

    def convert(split: str) -> list[E2EPair]:
        rows = loaded[split]
        return [
            E2EPair(mr.strip(), text.strip()) for mr, text in zip(rows[fields["mr"]], rows[fields["text"]], strict=True)
        ]

    return E2EData(convert(splits["train"]), convert(splits["valid"]), convert(splits["test"]), f"hub:{dataset}")


def load_e2e(task: Mapping[str, Any], data: Mapping[str, Any]) -> E2EData:
    """Load the splits from ``data['dir']`` (format ``auto``, ``lora_txt`` or ``csv``) or the hub."""
    if not data.get("dir"):
        loaded = _from_hub(data["hub_dataset"], task["hub_splits"], task["hub_fields"])
    else:
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
        names, reader = (task["files"], read_lora_txt) if fmt == "lora_txt" else (task["csv_files"], read_challenge_csv)
        loaded = E2EData(
            *(reader(folder / names[split]) for split in ("train", "valid", "test")), source=f"{fmt}:{folder}"
        )
    if data.get("max_train_examples"):
        loaded.train = loaded.train[: data["max_train_examples"]]
    if data.get("max_valid_examples"):
        loaded.valid = loaded.valid[: data["max_valid_examples"]]
    return loaded
