"""Collect run results into a table: ``python -m experiments.report [DIRS...]``."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from experiments.results import FAILURE_FILE, RESULT_FILE

__all__ = ["collect_runs", "print_summary"]


def collect_runs(directories: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Every ``result.json`` and ``failure.json`` under ``directories``, as flat records."""
    records = []
    for directory in directories:
        for path in sorted(Path(directory).rglob("*.json")):
            if path.name not in (RESULT_FILE, FAILURE_FILE) or "multirun" in path.parts:
                continue
            data = json.loads(path.read_text(encoding="utf-8"))
            records.append({**data, "path": str(path)})
    return records


def print_summary(directories: Iterable[str | Path]) -> None:
    """One line per run: task, method, seed, best and last main metric, trainable parameters."""
    records = collect_runs(directories)
    header = f"{'task':<8} {'method':<8} {'seed':>4} {'metric':<22} {'best':>8} {'last':>8} {'trainable':>12}"
    print(header)
    print("-" * len(header))
    for rec in sorted(records, key=lambda r: (r.get("task", ""), r.get("method", ""), r.get("seed", 0))):
        if rec.get("status") != "completed":
            print(
                f"{rec.get('task', '?'):<8} {rec.get('method', '?'):<8} {rec.get('seed', '?'):>4} FAILED: "
                f"{rec.get('error', '')[:60]}"
            )
            continue
        main = rec["main_metric"]
        best, last = rec["metrics"]["best"], rec["metrics"]["last"]
        print(
            f"{rec['task']:<8} {rec['method']:<8} {rec['seed']:>4} {main:<22} {100 * best[main]:>8.2f} "
            f"{100 * last[main]:>8.2f} {rec['trainable_params']:>12,}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="*", default=["results"], help="folders to search for result.json")
    args = parser.parse_args(argv)
    print_summary(args.dirs)


if __name__ == "__main__":
    main()
