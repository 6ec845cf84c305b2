"""The run's pace: one bar over the run whose postfix follows a clock, and throughput without evaluation time."""

from __future__ import annotations

import pytest

import experiments.progress as progress
from experiments.progress import POSTFIX_EVERY_S, RunProgress, Throughput


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class _Loss:
    """A loss whose every read (a host sync, for a GPU tensor) is counted."""

    def __init__(self, value: float) -> None:
        self.value, self.reads = value, 0

    def __float__(self) -> float:
        self.reads += 1
        return self.value


def test_the_bar_spans_the_run_from_its_resumed_step_and_refreshes_the_loss_on_a_clock(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    clock = _Clock()
    monkeypatch.setattr(progress, "monotonic", clock)
    loss = _Loss(0.25)
    with RunProgress(total_steps=10, done_steps=4, epochs=2) as bar:
        for _ in range(3):
            bar.advance(loss, 1e-3, epoch=2)
        assert loss.reads == 1  # read at the first step, then not until the clock says so
        clock.now += POSTFIX_EVERY_S
        bar.advance(loss, 1e-3, epoch=2)
        assert loss.reads == 2
    shown = capsys.readouterr().err
    assert "8/10" in shown and "epoch=2/2" in shown and "loss=0.2500" in shown and "lr=1.00e-03" in shown


def test_a_disabled_bar_never_reads_the_loss(capsys: pytest.CaptureFixture) -> None:
    loss = _Loss(0.25)
    with RunProgress(total_steps=3, done_steps=0, epochs=1, enabled=False) as bar:
        bar.advance(loss, 1e-3, epoch=1)
    assert loss.reads == 0 and capsys.readouterr().err == ""


def test_throughput_counts_since_the_last_measurement_and_leaves_out_restarted_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = _Clock()
    monkeypatch.setattr(progress, "perf_counter", clock)
    meter = Throughput(tokens_seen=100)
    meter.count(8)
    meter.count(8)
    clock.now += 2.0
    assert meter.rates(tokens_seen=500) == {"examples_per_s": 8.0, "tokens_per_s": 200.0}
    clock.now += 30.0  # evaluation
    meter.restart(tokens_seen=500)
    meter.count(4)
    clock.now += 1.0
    assert meter.rates(tokens_seen=500) == {"examples_per_s": 4.0, "tokens_per_s": None}  # no token counted
