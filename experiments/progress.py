"""The pace of a training run: one progress bar over all its optimizer steps, and throughput between log points."""

from __future__ import annotations

from contextlib import ExitStack
from time import monotonic, perf_counter
from types import TracebackType
from typing import SupportsFloat

from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

__all__ = ["POSTFIX_EVERY_S", "RunProgress", "Throughput"]

POSTFIX_EVERY_S = 2.0


class RunProgress:
    """A bar over every optimizer step of the run, so its ETA is the whole run's; a resumed run starts at its step.

    The postfix (epoch, loss, lr) is refreshed on a clock, not at log points, so it stays current however rarely
    steps are logged; reading the loss then costs one host sync every :data:`POSTFIX_EVERY_S` seconds. Log
    records printed while the bar is open go above it instead of through it.
    """

    def __init__(self, total_steps: int, done_steps: int, epochs: int, enabled: bool = True) -> None:
        self._total_steps, self._done_steps, self._epochs, self._enabled = total_steps, done_steps, epochs, enabled
        self._next_postfix = 0.0
        self._stack = ExitStack()

    def __enter__(self) -> RunProgress:
        self._stack.enter_context(logging_redirect_tqdm())
        self._bar = self._stack.enter_context(
            tqdm(
                total=self._total_steps,
                initial=self._done_steps,
                desc="training",
                unit="step",
                disable=not self._enabled,
                dynamic_ncols=True,
            )
        )
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._stack.close()

    def advance(self, loss: SupportsFloat, lr: float, epoch: int) -> None:
        """One optimizer step done; ``loss`` (this process's batch loss) is read only when the postfix is due."""
        now = monotonic()
        if self._enabled and now >= self._next_postfix:
            self._next_postfix = now + POSTFIX_EVERY_S
            postfix = {"epoch": f"{epoch}/{self._epochs}", "loss": f"{float(loss):.4f}", "lr": f"{lr:.2e}"}
            self._bar.set_postfix(postfix, refresh=False)
        self._bar.update()


class Throughput:
    """Examples and tokens per second since the previous measurement; :meth:`restart` after evaluating, so the
    time spent evaluating is not counted."""

    def __init__(self, tokens_seen: int = 0) -> None:
        self.restart(tokens_seen)

    def restart(self, tokens_seen: int) -> None:
        self._since, self._examples, self._tokens_seen = perf_counter(), 0, tokens_seen

    def count(self, examples: int) -> None:
        self._examples += examples

    def rates(self, tokens_seen: int) -> dict[str, float | None]:
        """``examples_per_s`` and ``tokens_per_s`` (None when no token was counted), then restart."""
        elapsed = max(perf_counter() - self._since, 1e-9)
        tokens = tokens_seen - self._tokens_seen
        rates = {"examples_per_s": self._examples / elapsed, "tokens_per_s": tokens / elapsed if tokens else None}
        self.restart(tokens_seen)
        return rates
