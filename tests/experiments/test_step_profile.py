"""The step profiler's own logic: a failed run stops it and writes nothing; device time is a union of intervals."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch.autograd import _profiler_enabled

from experiments.step_profile import PROFILE_DIR, StepProfiler, _busy_seconds


def test_a_run_failing_inside_the_window_stops_the_profiler_and_keeps_its_error(tmp_path: Path) -> None:
    profiler = StepProfiler(tmp_path, first=0, count=5, device=torch.device("cpu"))
    with pytest.raises(RuntimeError, match="the run's own error"), profiler:
        profiler.before_step(0)
        assert _profiler_enabled()
        raise RuntimeError("the run's own error")
    assert not _profiler_enabled() and not (tmp_path / PROFILE_DIR).exists()


def test_device_busy_time_counts_overlapping_activities_once() -> None:
    def event(start: float, end: float) -> SimpleNamespace:
        return SimpleNamespace(time_range=SimpleNamespace(start=start, end=end))

    # [0, 10] and [5, 12] overlap (two streams), [20, 25] is apart, [21, 22] lies inside it: 12 + 5 microseconds.
    events = [event(20, 25), event(0, 10), event(21, 22), event(5, 12)]
    assert _busy_seconds(events) == pytest.approx(17e-6)
    assert _busy_seconds([]) == 0.0
