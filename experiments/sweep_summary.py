"""The end of a multirun: one table of what each job did, and a non-zero exit if any job failed.

Failed sweep jobs are recorded and the sweep goes on (see :func:`experiments.runner.run_hydra_job`), so
without this a sweep with failures would end like a clean one. A job's Hydra folder is its run directory,
which other sweeps share, so each job records its outcome in the sweep's own folder instead:
``<hydra.sweep.dir>/<job number>/job.json``, marked started when it begins (from whichever process or node
runs it) and overwritten when it ends. :class:`SweepSummary`, registered in ``hydra.callbacks`` of
conf/glue.yaml and conf/e2e.yaml, writes the start marks and reads the outcomes when the sweep ends.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from experiments.atomic import write_json_atomic

__all__ = ["JOB_FILE", "SweepSummary", "summarize_sweep", "write_job_outcome"]

JOB_FILE = "job.json"
_STARTED = "started"
_STATUSES = ("done", "skipped", "failed")


def write_job_outcome(
    sweep_dir: Path, job_num: int, status: str, run_dir: str | None = None, error: str | None = None
) -> Path:
    """Record one multirun job's outcome (or its start) in the sweep's folder."""
    record = {"status": status, "run_dir": run_dir, "error": error}
    return write_json_atomic(Path(sweep_dir) / str(job_num) / JOB_FILE, record)


def _job_dirs(sweep_dir: Path) -> list[Path]:
    """The folders the sweep's jobs recorded into, in job order."""
    found = {p.parent for p in sweep_dir.rglob(JOB_FILE)}
    return sorted(found, key=lambda p: (len(p.parts), int(p.name) if p.name.isdigit() else -1, p.as_posix()))


def _read_job(job_dir: Path) -> dict[str, Any]:
    try:
        job = json.loads((job_dir / JOB_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        job = {"status": _STARTED}
    if job.get("status") not in _STATUSES:
        return {"status": "failed", "run_dir": None, "error": "no outcome recorded: the job died or was killed"}
    return job


def summarize_sweep(sweep_dir: str | Path) -> tuple[str, int]:
    """The summary table of the jobs under ``sweep_dir`` and how many of them failed."""
    sweep_dir = Path(sweep_dir)
    rows = [(job_dir.relative_to(sweep_dir).as_posix(), _read_job(job_dir)) for job_dir in _job_dirs(sweep_dir)]
    counts = {status: sum(job["status"] == status for _, job in rows) for status in _STATUSES}
    lines = [
        f"Sweep summary ({sweep_dir}): {len(rows)} jobs: {counts['done']} done, "
        f"{counts['skipped']} skipped (already complete), {counts['failed']} failed",
        f"  {'job':<6} {'status':<8} run directory or error",
    ]
    for name, job in rows:
        detail = job.get("error") if job["status"] == "failed" else job.get("run_dir")
        first_line = str(detail or "").splitlines()[0] if detail else ""
        lines.append(f"  {name:<6} {job['status']:<8} {first_line[:200]}")
    if counts["failed"]:
        lines.append(
            "  failed jobs left failure.json (with the traceback) in their run directories, or for a refused "
            "config in its job's folder here"
        )
    return "\n".join(lines), counts["failed"]


class SweepSummary(Callback):
    """Mark each multirun job started; print the sweep's table when it ends, exiting 1 if any job failed."""

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.hydra.mode == RunMode.MULTIRUN:
            write_job_outcome(config.hydra.sweep.dir, config.hydra.job.num, _STARTED)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        table, failed = summarize_sweep(config.hydra.sweep.dir)
        print(table, flush=True)
        if failed:
            sys.exit(1)
