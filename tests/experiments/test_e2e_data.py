"""Reading the E2E data folders: errors name file and line, limits must be positive, and the fingerprint."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import pytest

from experiments.config import compose_config
from experiments.e2e_data import e2e_data_fingerprint, load_e2e, read_challenge_csv
from experiments.glue_data import DataError

LINES = "name : Alpha||Alpha is a pub .\nname : Beta||Beta is a cafe .\n"
CSV_HEADER = "mr,ref\n"


@cache  # composing the config is slow
def _task() -> dict[str, Any]:
    return dict(compose_config("e2e").task)


def _folder(root: Path, train: str = LINES) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in (("train.txt", train), ("valid.txt", LINES), ("test.txt", LINES)):
        (root / name).write_text(text, encoding="utf-8")
    return root


def _data(folder: Path, **options: Any) -> dict[str, Any]:
    return {"dir": str(folder), "format": "auto", **options}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('"name[A]","A is a pub.",extra\n', r"data\.csv:2: row has 3 columns \(allowed: 2, as in the header\)"),
        ('"name[A]",""\n', r"data\.csv:2: empty reference \(allowed: non-empty 'mr' and 'ref'\)"),
        (' ,"A is a pub."\n', r"data\.csv:2: empty MR"),
        ('"name[A]","A is \n' + "x" * 200_000 + "\n", r"data\.csv:2: field larger than field limit .*unbalanced"),
    ],
)
def test_challenge_csv_rows_are_checked(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "data.csv"
    path.write_text(CSV_HEADER + body, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        read_challenge_csv(path)


def test_challenge_csv_empty_and_non_utf8(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("", encoding="utf-8")
    with pytest.raises(DataError, match=r"data\.csv: empty file"):
        read_challenge_csv(path)
    path.write_bytes(b'mr,ref\n"name[A]","A."\n"name[B]","caf\xe9"\n')
    with pytest.raises(DataError, match=r"data\.csv:3: byte\(s\) e9 at byte 15 are not UTF-8"):
        read_challenge_csv(path)


@pytest.mark.parametrize("key", ["max_train_examples", "max_valid_examples"])
@pytest.mark.parametrize("value", [0, -5])
def test_non_positive_limits_are_refused(tmp_path: Path, key: str, value: int) -> None:
    data = _data(_folder(tmp_path), **{key: value})
    for read in (load_e2e, e2e_data_fingerprint):
        with pytest.raises(ValueError, match=rf"data\.{key}={value}: must be a positive integer or null"):
            read(_task(), data)


def test_limits_cut_train_and_valid(tmp_path: Path) -> None:
    loaded = load_e2e(_task(), _data(_folder(tmp_path), max_train_examples=1, max_valid_examples=1))
    assert (len(loaded.train), len(loaded.valid), len(loaded.test)) == (1, 1, 2)


def test_source_records_no_machine_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_e2e(_task(), _data(_folder(tmp_path / "e2e"))).source == "lora_txt:<local>/e2e"
    monkeypatch.chdir(tmp_path)
    assert load_e2e(_task(), _data(Path("e2e"))).source == "lora_txt:e2e"  # a relative folder as given


def test_fingerprint_follows_content_and_options_not_path(tmp_path: Path) -> None:
    first = load_e2e(_task(), _data(_folder(tmp_path / "a"))).fingerprint
    assert e2e_data_fingerprint(_task(), _data(tmp_path / "a")) == first
    assert load_e2e(_task(), _data(_folder(tmp_path / "b"))).fingerprint == first
    changed = _data(_folder(tmp_path / "c", LINES.replace("pub", "bar")))
    assert load_e2e(_task(), changed).fingerprint == e2e_data_fingerprint(_task(), changed) != first
    assert e2e_data_fingerprint(_task(), _data(tmp_path / "a", max_train_examples=1)) != first
    assert e2e_data_fingerprint(_task(), {"dir": None}) is None
