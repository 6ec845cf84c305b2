"""The Section-7 analyses (subspace similarity, amplification) in the report.

Contract with ``experiments/analysis.py``: each analysis writes ``<dir>/analysis.json`` with

* ``kind``: ``"subspace_similarity"`` or ``"amplification"``;
* ``title``, ``model``, ``task``: strings;
* ``summary_markdown``: a markdown fragment (its headings are demoted below the report's; links relative to
  the analysis folder are rewritten to stay valid from report.md);
* ``figures``: PNG paths relative to the analysis.json; ``tables``: CSV paths relative to it.

A file that breaks the contract is still shown, with what is wrong, instead of being skipped.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["ANALYSIS_FILE", "KINDS", "Analysis", "analysis_markdown", "find_analyses", "read_analysis"]

ANALYSIS_FILE = "analysis.json"
KINDS = ("subspace_similarity", "amplification")
KIND_NAMES = {"subspace_similarity": "subspace similarity", "amplification": "amplification factor"}
INLINE_TABLE_ROWS = 30  # a CSV up to this many rows is shown in the report; longer ones are linked only
_LINK = re.compile(r"(!?\[[^\]]*\]\()([^)\s]+)(\))")
_HEADING = re.compile(r"^(#{1,6})(\s)")


@dataclass(frozen=True)
class Analysis:
    """One analysis.json as the report shows it; ``problems`` lists its departures from the contract."""

    path: Path
    kind: str
    title: str
    model: str
    task: str
    summary_markdown: str
    figures: tuple[Path, ...]
    tables: tuple[Path, ...]
    problems: tuple[str, ...]


def find_analyses(directories: Iterable[str | Path], include_quick: bool = False) -> list[Path]:
    """Every analysis.json under ``directories`` (``quick`` folders skipped unless ``include_quick``)."""
    found = []
    for directory in directories:
        root = Path(directory)
        for path in sorted(root.rglob(ANALYSIS_FILE)):
            if include_quick or "quick" not in path.relative_to(root).parts[:-1]:
                found.append(path)
    return found


def _string(data: dict[str, Any], key: str, problems: list[str]) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        problems.append(f"'{key}' should be a string, got {type(value).__name__}")
        return "?" if value is None else str(value)
    return value


def _files(data: dict[str, Any], key: str, base: Path, suffix: str, problems: list[str]) -> tuple[Path, ...]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.append(f"'{key}' should be a list of paths relative to {ANALYSIS_FILE}")
        return ()
    files = []
    for name in value:
        if Path(name).is_absolute():
            problems.append(f"{key}: {name} is absolute; the contract asks for a path relative to {ANALYSIS_FILE}")
        path = base / name
        if not path.is_file():
            problems.append(f"{key}: {name} does not exist")
        elif path.suffix.lower() != suffix:
            problems.append(f"{key}: {name} is not a {suffix} file")
        files.append(path)
    return tuple(files)


def read_analysis(path: Path) -> Analysis:
    """Read one analysis.json, checking it against the contract (problems are recorded, not raised)."""
    problems: list[str] = []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("the top level is not an object")
    except (OSError, ValueError) as error:
        return Analysis(path, "?", str(path.parent.name), "?", "?", "", (), (), (f"unreadable: {error}",))
    kind = _string(data, "kind", problems)
    if kind not in KINDS and isinstance(data.get("kind"), str):
        problems.append(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    title, model, task = (_string(data, key, problems) for key in ("title", "model", "task"))
    summary = _string(data, "summary_markdown", problems)
    figures = _files(data, "figures", path.parent, ".png", problems)
    tables = _files(data, "tables", path.parent, ".csv", problems)
    return Analysis(path, kind, title, model, task, summary, figures, tables, tuple(problems))


def _relative(target: Path, report_dir: Path) -> str:
    return Path(os.path.relpath(target.resolve(), report_dir.resolve())).as_posix()


def _adapt_fragment(markdown: str, analysis_dir: Path, report_dir: Path, depth: int) -> str:
    """Demote headings by ``depth`` levels and re-point relative links at files in the analysis folder."""

    def link(match: re.Match[str]) -> str:
        target = match.group(2)
        if re.match(r"^[a-z][a-z0-9+.-]*:|^#|^/", target):
            return match.group(0)
        local = analysis_dir / target
        return f"{match.group(1)}{_relative(local, report_dir)}{match.group(3)}" if local.exists() else match.group(0)

    lines, fenced = [], False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if not fenced:
            line = _HEADING.sub(lambda m: "#" * min(len(m.group(1)) + depth, 6) + m.group(2), line)
            line = _LINK.sub(link, line)
        lines.append(line)
    return "\n".join(lines)


def _table_markdown(path: Path) -> str | None:
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError):
        return None
    return frame.to_markdown(index=False) if len(frame) <= INLINE_TABLE_ROWS else None


def analysis_markdown(analysis: Analysis, report_dir: Path, heading_level: int = 3) -> str:
    """The report section for one analysis: title, what it ran on, its summary, figures and tables."""
    hashes = "#" * heading_level
    kind = KIND_NAMES.get(analysis.kind, analysis.kind)
    parts = [
        f"{hashes} {analysis.title}",
        f"*{kind}* · model **{analysis.model}** · task **{analysis.task}** · "
        f"from [{_relative(analysis.path, report_dir)}]({_relative(analysis.path, report_dir)})",
    ]
    if analysis.problems:
        parts.append("\n".join(f"> **Problem with this analysis.json:** {p}" for p in analysis.problems))
    if analysis.summary_markdown.strip():
        parts.append(
            _adapt_fragment(analysis.summary_markdown.strip(), analysis.path.parent, report_dir, heading_level)
        )
    for figure in analysis.figures:
        if figure.is_file():
            parts.append(f"![{analysis.title}: {figure.stem}]({_relative(figure, report_dir)})")
    for table in analysis.tables:
        if not table.is_file():
            continue
        inline = _table_markdown(table)
        link = f"Table [{table.name}]({_relative(table, report_dir)})"
        parts.append(f"{link}:\n\n{inline}" if inline else f"{link} (longer than {INLINE_TABLE_ROWS} rows).")
    return "\n\n".join(parts)
