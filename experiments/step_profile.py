"""A profiler trace of a window of a run's optimizer steps, to see where a runner's step time goes on the device
the run uses (``train.profile_steps``; off by default).

The window starts after ``train.profile_from_step`` steps, so the first, cold steps (CUDA context, cuBLAS
handles, allocator growth) stay out of it, and spans ``train.profile_steps`` steps with whatever the loop does
between them (collation, copies, the step log, a checkpoint). It ends early where an epoch's steps end, so
evaluation stays out. Only the main process records. Written to ``<run_dir>/profile/``: ``trace.json``
(Chrome trace format: open it in Perfetto or chrome://tracing) and ``summary.txt``, the operators and
device-runtime calls by self time. The settings do not change what a run computes, so they leave its directory
and hash alone: a finished run is not rerun to be profiled (profile into another ``results_dir``, or pass
``overwrite=true``), and the steps/s of a profiled run include the profiler's overhead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from pathlib import Path

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from experiments.atomic import atomic_write

__all__ = ["PROFILE_DIR", "StepProfiler"]

logger = logging.getLogger(__name__)

PROFILE_DIR = "profile"
SUMMARY_ROWS = 40


class StepProfiler:
    """Records optimizer steps ``first + 1 .. first + count`` (global, 1-based) of this process when enabled;
    a context manager, so the profiler is stopped however the loop ends."""

    def __init__(self, run_dir: Path, first: int, count: int, device: torch.device, enabled: bool = True) -> None:
        self._out = Path(run_dir) / PROFILE_DIR
        self._first, self._last = first, first + count
        self._device = device
        self._enabled = enabled and count > 0
        self._profile: profile | None = None
        self._started_at_step = self._step = first
        self._started = 0.0

    def plan(self, resumed_at: int, total_steps: int) -> None:
        """Say, before training, when the window cannot be recorded (instead of writing nothing silently)."""
        if not self._enabled:
            return
        if self._first >= total_steps:
            logger.warning(
                "train.profile_from_step=%d: the run has %d steps, so nothing is profiled; lower it",
                self._first,
                total_steps,
            )
        elif resumed_at >= self._last:
            window = (self._first + 1, self._last)
            logger.warning("resumed at step %d, past the profiled window (steps %d-%d)", resumed_at, *window)

    def before_step(self, global_step: int) -> None:
        """Call before the optimizer step numbered ``global_step + 1``: starts recording inside the window."""
        if self._enabled and self._profile is None and self._first <= global_step < self._last:
            activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self._device.type == "cuda" else [])
            self._synchronize()
            self._profile = profile(activities=activities)
            self._profile.__enter__()
            self._started_at_step = self._step = global_step
            self._started = time.perf_counter()

    def after_step(self, global_step: int) -> None:
        """Call after the step that brought the count to ``global_step``: writes the trace at the window's end."""
        self._step = global_step
        if self._profile is not None and global_step >= self._last:
            self.end_of_steps()

    def end_of_steps(self) -> None:
        """Call where an epoch's steps end: a window being recorded ends here and is written, so evaluation stays
        out of it; one not yet reached stays planned."""
        if self._profile is not None:
            self._stop(write=True)
            self._enabled = False

    def __enter__(self) -> StepProfiler:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, traceback: object) -> None:
        """A failed run writes nothing; the profiler is stopped in any case, the run's own error kept."""
        self._stop(write=kind is None)

    def _stop(self, write: bool) -> None:
        if self._profile is None:
            return
        recorded, self._profile = self._profile, None
        try:
            if write:
                self._synchronize()
        finally:
            recorded.__exit__(None, None, None)
        if write:
            wall_s = time.perf_counter() - self._started
            try:
                self._write(recorded, self._step - self._started_at_step, wall_s)
            except OSError as error:  # a diagnostic must not fail the run it observes
                logger.warning("the profile could not be written to %s: %s", self._out, error)

    def _synchronize(self) -> None:
        if self._device.type == "cuda":
            torch.cuda.synchronize(self._device)

    def _write(self, recorded: profile, steps: int, wall_s: float) -> None:
        self._out.mkdir(parents=True, exist_ok=True)
        atomic_write(self._out / "trace.json", lambda tmp: recorded.export_chrome_trace(str(tmp)))
        on_gpu = self._device.type == "cuda"
        per_step = max(steps, 1)
        header = [
            f"optimizer steps {self._started_at_step + 1}-{self._step} ({steps} steps) on {self._device}",
            f"wall time per step: {1e3 * wall_s / per_step:.2f} ms (the profiler's own overhead included)",
        ]
        if on_gpu:
            busy_s = _busy_seconds(e for e in recorded.events() if e.device_type == DeviceType.CUDA)
            header.append(
                f"device busy per step: {1e3 * busy_s / per_step:.2f} ms "
                f"({100 * busy_s / max(wall_s, 1e-9):.0f}% of the wall time; no kernel ran in the rest)"
            )
        # On a GPU the device-time table alone leaves out the host's runtime calls (launches, copies, syncs),
        # which take no device time, so a host-bound step is read from the self-CPU table.
        orders = [("self_device_time_total", "by self device time")] if on_gpu else []
        orders.append(("self_cpu_time_total", "by self CPU time"))
        averages = recorded.key_averages()
        tables = [f"{title}:\n{averages.table(sort_by=key, row_limit=SUMMARY_ROWS)}" for key, title in orders]
        text = "\n".join(header) + "\n\n" + "\n\n".join(tables) + "\n"
        atomic_write(self._out / "summary.txt", lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _busy_seconds(device_events: Iterable) -> float:
    """The time at least one device activity ran: the union of their intervals, so overlapping streams count
    once."""
    busy_us, end = 0.0, float("-inf")
    for start, stop in sorted((e.time_range.start, e.time_range.end) for e in device_events):
        if stop > end:
            busy_us += stop - max(start, end)
            end = stop
    return busy_us / 1e6
