"""A profiler trace of a window of a run's optimizer steps, to see where a runner's step time goes on the device
the run uses (``train.profile_steps``; off by default).

The window starts after ``train.profile_from_step`` steps, so the first, cold steps (CUDA context, cuBLAS
handles, allocator growth) stay out of it, and spans ``train.profile_steps`` steps, including whatever the loop
does in them (collation, copies, logging, a checkpoint or evaluation that falls inside). Only the main process
records. Written to ``<run_dir>/profile/``: ``trace.json`` (Chrome trace format: open it in Perfetto or
chrome://tracing) and ``summary.txt``, the operators and device-runtime calls by self time. A resumed run that
starts past the window records nothing. The settings do not change what a run computes, so they leave its
directory and hash alone: a finished run is not rerun to be profiled (profile into another ``results_dir``, or
pass ``overwrite=true``), and the steps/s of a profiled run include the profiler's overhead.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from experiments.atomic import atomic_write

__all__ = ["PROFILE_DIR", "StepProfiler"]

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
        self._started = 0.0
        self._step = first

    def before_step(self, global_step: int) -> None:
        """Call before the optimizer step numbered ``global_step + 1``: starts recording at the window's start."""
        if self._enabled and self._profile is None and global_step == self._first:
            activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self._device.type == "cuda" else [])
            self._synchronize()
            self._profile = profile(activities=activities)
            self._profile.__enter__()
            self._started = time.perf_counter()

    def after_step(self, global_step: int) -> None:
        """Call after the step that brought the count to ``global_step``: writes the trace at the window's end."""
        self._step = global_step
        if self._profile is not None and global_step >= self._last:
            self._stop(write=True)

    def __enter__(self) -> StepProfiler:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, traceback: object) -> None:
        """A run that ends inside the window writes the steps it made; one that fails writes nothing."""
        self._stop(write=kind is None)

    def _stop(self, write: bool) -> None:
        if self._profile is None:
            return
        self._synchronize()
        wall_s = time.perf_counter() - self._started
        recorded, self._profile, self._enabled = self._profile, None, False
        recorded.__exit__(None, None, None)
        if write:
            self._write(recorded, self._step - self._first, wall_s)

    def _synchronize(self) -> None:
        if self._device.type == "cuda":
            torch.cuda.synchronize(self._device)

    def _write(self, recorded: profile, steps: int, wall_s: float) -> None:
        self._out.mkdir(parents=True, exist_ok=True)
        atomic_write(self._out / "trace.json", lambda tmp: recorded.export_chrome_trace(str(tmp)))
        events = recorded.key_averages()
        on_gpu = self._device.type == "cuda"
        header = [
            f"optimizer steps {self._first + 1}-{self._first + steps} ({steps} steps) on {self._device}",
            f"wall time per step: {1e3 * wall_s / max(steps, 1):.2f} ms",
        ]
        if on_gpu:
            kernels = [event for event in events if event.device_type == DeviceType.CUDA]  # not the ops launching them
            kernels_s = sum(event.self_device_time_total for event in kernels) / 1e6
            header.append(
                f"device busy per step: {1e3 * kernels_s / max(steps, 1):.2f} ms "
                f"({100 * kernels_s / max(wall_s, 1e-9):.0f}% of the wall time; the rest the device waited)"
            )
        sort_by = "self_device_time_total" if on_gpu else "self_cpu_time_total"
        table = events.table(sort_by=sort_by, row_limit=SUMMARY_ROWS)
        text = "\n".join(header) + "\n\n" + table + "\n"
        atomic_write(self._out / "summary.txt", lambda tmp: tmp.write_text(text, encoding="utf-8"))
