"""The E2E NLG file formats: system outputs, grouped references, and the `MR||text` data files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class E2EFormatError(ValueError):
    """A hypothesis, reference or data file does not have the layout the E2E scorer expects."""


def _read_stripped_lines(path: str | Path, role: str) -> list[str]:
    """Lines of a UTF-8 file, each stripped, split where the official scorer's reader splits them."""
    path = Path(path)
    if not path.is_file():
        raise E2EFormatError(f"{role} file not found: {path} (check the path)")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = len((raw[: error.start].decode("utf-8", "replace") + "x").splitlines())
        raise E2EFormatError(
            f"{path}:{line}: byte(s) {raw[error.start : error.end].hex(' ')} are not UTF-8 (allowed: UTF-8 text); "
            f"re-encode the {role} file as UTF-8, e.g. iconv -f latin1 -t utf-8"
        ) from None
    # str.splitlines breaks at the same line boundaries as the codecs reader of measure_scores.py.
    lines = [line.strip() for line in text.splitlines()]
    if not any(lines):
        raise E2EFormatError(f"{role} file {path} is empty: it holds no text at all")
    return lines


def read_hypotheses(path: str | Path) -> list[str]:
    """System outputs, one per MR and line; a blank line is an empty output, as in the official scorer."""
    return _read_stripped_lines(path, "HYP")


def read_references(path: str | Path) -> list[list[str]]:
    """References grouped per MR (consecutive lines, one blank line between MRs), the official layout.

    A file with no blank line at all holds one reference per MR (one MR per line), as the official scorer
    reads it. Blank lines before the first or after the last group are ignored.

    Raises:
        E2EFormatError: the file is missing or empty, or two blank lines in a row leave an MR without
            references.
    """
    lines = _read_stripped_lines(path, "REF")
    first = next(i for i, line in enumerate(lines) if line)
    last = max(i for i, line in enumerate(lines) if line)
    groups: list[list[str]] = [[]]
    for index in range(first, last + 1):
        line = lines[index]
        if line:
            groups[-1].append(line)
        elif groups[-1]:
            groups.append([])
        else:
            raise E2EFormatError(
                f"REF file {path}, line {index + 1}: a second blank line in a row would make an MR with no "
                "references; separate the MR groups with exactly one blank line"
            )
    if len(groups) == 1:
        return [[line] for line in groups[0]]
    return groups


def _split_mr_text(line: str, path: str | Path, number: int) -> tuple[str, str]:
    """(MR, text) of one line; anything but exactly one '||' with text on both sides is refused, as a second
    '||' would silently move words between the MR and the text."""
    mr, separator, text = line.partition("||")
    mr, text = mr.strip(), text.strip()
    problem = None
    if not separator:
        problem = "no '||' between the MR and the text"
    elif "||" in text:
        problem = f"{1 + text.count('||')} '||' separators"
    elif mr.endswith("|") or text.startswith("|"):
        problem = "'|||' leaves the boundary between the MR and the text ambiguous"
    elif not mr:
        problem = "empty MR before '||'"
    elif not text:
        problem = "empty text after '||'"
    if problem:
        raise E2EFormatError(
            f"{path}:{number}: {problem} (allowed: exactly one '||' with text on both sides, e.g. "
            "'name : The Vaults | Type : pub||The Vaults is a pub .'); fix the line"
        )
    return mr, text


def read_mr_text_file(path: str | Path) -> list[tuple[str, str]]:
    """(MR, text) pairs from an E2E data file in the LoRA repository's `MR||text` layout; blank lines are skipped.

    Raises:
        E2EFormatError: naming file and line, for a line that is not exactly one non-empty MR, '||', and text.
    """
    lines = _read_stripped_lines(path, "E2E data")
    return [_split_mr_text(line, path, number) for number, line in enumerate(lines, start=1) if line]


def group_references_by_mr(pairs: Sequence[tuple[str, str]]) -> tuple[list[str], list[list[str]]]:
    """Unique MRs in first-seen order and all texts of each: one scoring instance per MR."""
    grouped: dict[str, list[str]] = {}
    for mr, text in pairs:
        grouped.setdefault(mr, []).append(text)
    return list(grouped), list(grouped.values())


def _check_single_line(text: str, label: str) -> None:
    """Reject text that would not survive a round trip through a line-based file."""
    if text != text.strip() or len(text.splitlines()) > 1:
        raise E2EFormatError(f"{label} is {text!r}: it must be one line without surrounding whitespace to be written")


def write_hypotheses(path: str | Path, hypotheses: Sequence[str]) -> None:
    """Write system outputs in the official one-output-per-line layout."""
    for index, hypothesis in enumerate(hypotheses):
        _check_single_line(hypothesis, f"hypothesis {index}")
    Path(path).write_text("".join(f"{hypothesis}\n" for hypothesis in hypotheses), encoding="utf-8")


def check_references(references: Sequence[Sequence[str]]) -> None:
    """Raise :class:`E2EFormatError` unless the grouped references can be written in the official layout."""
    if len(references) == 1 and len(references[0]) > 1:
        raise E2EFormatError(
            "a single MR with several references cannot be written: the official layout reads a file "
            "without blank lines as one reference per MR"
        )
    for index, group in enumerate(references):
        if not group:
            raise E2EFormatError(f"MR {index} has no references; every MR needs at least one")
        for number, reference in enumerate(group):
            if not reference:
                raise E2EFormatError(f"reference {number} of MR {index} is empty; references must hold text")
            _check_single_line(reference, f"reference {number} of MR {index}")


def write_references(path: str | Path, references: Sequence[Sequence[str]]) -> None:
    """Write grouped references in the official layout that `read_references` reads back."""
    check_references(references)
    text = "\n".join("".join(f"{reference}\n" for reference in group) for group in references)
    Path(path).write_text(text, encoding="utf-8")
