"""What the GLUE and E2E readers share: the error type, line reading that names file and line, row limits and
the content fingerprint a run records to know exactly which data it was trained and scored on."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path

from datasets import Dataset

from experiments.fingerprints import sha256_file

__all__ = [
    "MAX_LINE_BYTES",
    "DataError",
    "check_limit",
    "data_fingerprint",
    "decode_utf8",
    "files_fingerprint",
    "read_lines",
    "take_first",
]

# Real GLUE and E2E lines are under 2 kB: a longer line means lost line breaks or a file that is not data.
MAX_LINE_BYTES = 1 << 20
REENCODE = "re-encode the file as UTF-8, e.g. iconv -f latin1 -t utf-8 FILE > FILE.utf8"


class DataError(ValueError):
    """The data folder or a data file is missing or malformed."""


def _not_utf8(path: Path, line_no: int, column: int, bad: bytes) -> DataError:
    where = f"{path}:{line_no}: byte(s) {bad.hex(' ')} at byte {column}"
    return DataError(f"{where} are not UTF-8 (allowed: UTF-8 text); {REENCODE}")


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Numbered lines of a UTF-8 file without their line ends (``\\n`` or ``\\r\\n``) or a leading byte-order mark.

    Reads at most ``MAX_LINE_BYTES`` per line, so a file without line breaks fails at once naming file and line
    instead of filling memory or failing deep inside a parser.
    """
    with path.open("rb") as handle:
        line_no = 0
        while raw := handle.readline(MAX_LINE_BYTES + 1):
            line_no += 1
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                raise DataError(
                    f"{path}:{line_no}: line longer than {MAX_LINE_BYTES:,} bytes (allowed: real data lines are "
                    "under 2 kB); the file has lost its line breaks or is not a data file: check it"
                )
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise _not_utf8(path, line_no, error.start + 1, raw[error.start : error.end]) from None
            if line_no == 1:
                text = text.removeprefix("\ufeff")
            yield line_no, text.removesuffix("\n").removesuffix("\r")


def decode_utf8(raw: bytes, path: Path) -> str:
    """``raw`` as UTF-8 text (a leading byte-order mark dropped); undecodable bytes are named by file and line."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line_start = raw.rfind(b"\n", 0, error.start) + 1
        line_no = raw.count(b"\n", 0, error.start) + 1
        raise _not_utf8(path, line_no, error.start - line_start + 1, raw[error.start : error.end]) from None


def check_limit(key: str, value: int | None) -> int | None:
    """Refuse a row limit that slicing would misread: 0 would mean no limit and a negative one drop rows."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
        raise ValueError(f"{key}={value}: must be a positive integer or null")
    return value


def take_first(examples: Dataset, limit: int | None) -> Dataset:
    """The first ``limit`` examples (all of them for None or a limit beyond the split), in order."""
    return examples if limit is None or limit >= len(examples) else examples.select(range(limit))


def data_fingerprint(split_digests: Mapping[str, str], options: Mapping[str, object]) -> str:
    """A sha256 over each split's name and content digest (sorted by split) and the options that change what is read.

    Paths are left out on purpose: the same bytes in another folder are the same data.
    """
    digest = hashlib.sha256()
    for split in sorted(split_digests):
        digest.update(f"{split}\t{split_digests[split]}\n".encode())
    digest.update(json.dumps(dict(options), sort_keys=True).encode())
    return digest.hexdigest()


def files_fingerprint(files: Mapping[str, Path], options: Mapping[str, object]) -> str:
    """:func:`data_fingerprint` of files by the sha256 of their bytes: hashing only, no parsing."""
    return data_fingerprint({split: sha256_file(path) for split, path in files.items()}, options)
