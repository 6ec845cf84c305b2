"""Experiment tracking: a run's training curves in the user's tools, chosen by the ``logger=`` config group.

``train_log.jsonl`` and the per-epoch history (checkpoint, then ``result.json``) are the run's own record,
which the report reads; a tracker mirrors them into TensorBoard, a CSV file, MLflow or Weights & Biases, under
``<run dir>/logs/``. A tracker always opens empty and a resumed run replays into it what it kept of its
record, so no backend, append-only ones included, shows a step twice or a step the resumed run discarded.
"""

from __future__ import annotations

import csv
import importlib.util
import logging
import shutil
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

__all__ = [
    "LOGS_DIR",
    "TRACKERS",
    "Backend",
    "TrackedRun",
    "Tracker",
    "TrackerUnavailableError",
    "epoch_scalars",
    "open_tracker",
    "replay",
    "require_tracker",
    "step_scalars",
]

LOGS_DIR = "logs"

logger = logging.getLogger(__name__)


class TrackerUnavailableError(ImportError):
    """The chosen ``logger`` backend's package is not installed."""


@dataclass(frozen=True)
class TrackedRun:
    """What a backend is told about the run it tracks."""

    logs_dir: Path  # <run dir>/logs, which the backends share
    name: str  # the run directory relative to results_dir: unique and readable
    params: Mapping[str, Any]  # the run's (portable) config
    project: str  # MLflow experiment / W&B project
    mode: str  # W&B: offline or online


class Tracker(Protocol):
    """Receives named scalars at optimizer steps, in non-decreasing step order."""

    def log(self, step: int, scalars: Mapping[str, float]) -> None: ...

    def close(self) -> None: ...


class Backend:
    """One kind of tracker: the modules it imports, where under ``logs/`` it writes, and its calls."""

    modules: ClassVar[tuple[str, ...]] = ()  # importable for the backend to work
    pip: ClassVar[str] = ""  # what installs them
    extra: ClassVar[str] = ""  # the lora-harness extra that includes them
    location: ClassVar[str] = ""  # its file or folder under logs/

    def __init__(self, run: TrackedRun) -> None:
        pass

    def log(self, step: int, scalars: Mapping[str, float]) -> None:
        pass

    def close(self) -> None:
        pass


class NullTracker(Backend):
    """``logger=none``: the run's own record only."""


class TensorBoardTracker(Backend):
    """Event files in ``logs/tensorboard`` (``tensorboard --logdir <results_dir>`` shows every run)."""

    modules: ClassVar[tuple[str, ...]] = ("tensorboard",)
    pip: ClassVar[str] = "tensorboard"
    extra: ClassVar[str] = "experiments"
    location: ClassVar[str] = "tensorboard"

    def __init__(self, run: TrackedRun) -> None:
        from torch.utils.tensorboard import SummaryWriter

        directory = run.logs_dir / self.location
        shutil.rmtree(directory, ignore_errors=True)
        self._writer = SummaryWriter(log_dir=str(directory))

    def log(self, step: int, scalars: Mapping[str, float]) -> None:
        for name, value in scalars.items():
            self._writer.add_scalar(name, value, global_step=step)

    def close(self) -> None:
        self._writer.close()


class CsvTracker(Backend):
    """``logs/metrics.csv`` with one ``step,metric,value`` row per scalar: long form, so any metric fits."""

    location: ClassVar[str] = "metrics.csv"
    HEADER: ClassVar[tuple[str, ...]] = ("step", "metric", "value")

    def __init__(self, run: TrackedRun) -> None:
        run.logs_dir.mkdir(parents=True, exist_ok=True)
        self._file = (run.logs_dir / self.location).open("w", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file)
        self._writer.writerow(self.HEADER)

    def log(self, step: int, scalars: Mapping[str, float]) -> None:
        self._writer.writerows((step, name, repr(value)) for name, value in scalars.items())
        self._file.flush()  # readable while the run goes on

    def close(self) -> None:
        self._file.close()


def _flat(prefix: str, value: Any) -> Iterable[tuple[str, str]]:
    """A nested config as MLflow params: dotted keys, string values."""
    if isinstance(value, Mapping):
        for key, inner in value.items():
            yield from _flat(f"{prefix}.{key}" if prefix else str(key), inner)
    else:
        yield prefix, str(value)


class MlflowTracker(Backend):
    """An MLflow run in a SQLite store, ``logs/mlflow/mlflow.db`` (MLflow 3 retired plain-file stores); view it
    with ``mlflow ui --backend-store-uri sqlite:///<run dir>/logs/mlflow/mlflow.db``.

    The store holds this run directory's runs only, so the runs of earlier attempts are deleted (MLflow keeps
    them as deleted, out of the UI's view) and the new one replaces them.
    """

    modules: ClassVar[tuple[str, ...]] = ("mlflow", "sqlalchemy")
    pip: ClassVar[str] = "mlflow"
    extra: ClassVar[str] = "tracking"
    location: ClassVar[str] = "mlflow"
    _PARAMS_PER_CALL: ClassVar[int] = 100  # MLflow's limit for one log_batch

    def __init__(self, run: TrackedRun) -> None:
        from mlflow.entities import Metric, Param
        from mlflow.tracking import MlflowClient

        root = (run.logs_dir / self.location).resolve()
        root.mkdir(parents=True, exist_ok=True)
        self._metric = Metric
        self._client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
        experiment = self._client.get_experiment_by_name(run.project)
        if experiment is None:
            experiment_id = self._client.create_experiment(run.project, (root / "artifacts").as_uri())
        else:
            experiment_id = experiment.experiment_id
            for earlier in self._client.search_runs([experiment_id]):
                self._client.delete_run(earlier.info.run_id)
        self._run_id = self._client.create_run(experiment_id, run_name=run.name).info.run_id
        params = [Param(key, value) for key, value in _flat("", run.params)]
        for start in range(0, len(params), self._PARAMS_PER_CALL):
            self._client.log_batch(self._run_id, params=params[start : start + self._PARAMS_PER_CALL])

    def log(self, step: int, scalars: Mapping[str, float]) -> None:
        now = int(time.time() * 1000)
        metrics = [self._metric(name, value, now, step) for name, value in scalars.items()]
        self._client.log_batch(self._run_id, metrics=metrics)

    def close(self) -> None:
        self._client.set_terminated(self._run_id)


class WandbTracker(Backend):
    """A Weights & Biases run under ``logs/wandb``; offline by default (upload later with ``wandb sync``)."""

    modules: ClassVar[tuple[str, ...]] = ("wandb",)
    pip: ClassVar[str] = "wandb"
    extra: ClassVar[str] = "tracking"
    location: ClassVar[str] = "wandb"

    def __init__(self, run: TrackedRun) -> None:
        import wandb

        shutil.rmtree(run.logs_dir / self.location, ignore_errors=True)  # wandb writes into <dir>/wandb
        run.logs_dir.mkdir(parents=True, exist_ok=True)
        self._run = wandb.init(
            project=run.project, name=run.name, dir=str(run.logs_dir), mode=run.mode, config=dict(run.params)
        )

    def log(self, step: int, scalars: Mapping[str, float]) -> None:
        self._run.log(dict(scalars), step=step)

    def close(self) -> None:
        self._run.finish()


TRACKERS: dict[str, type[Backend]] = {
    "tensorboard": TensorBoardTracker,
    "csv": CsvTracker,
    "mlflow": MlflowTracker,
    "wandb": WandbTracker,
    "none": NullTracker,
}


def _installed(module: str) -> bool:
    if module in sys.modules:
        return sys.modules[module] is not None
    return importlib.util.find_spec(module) is not None


def require_tracker(name: str) -> None:
    """Refuse a backend whose package is missing, before anything is loaded or trained.

    Raises:
        TrackerUnavailableError: naming ``logger=<name>``, the install command and the fallback.
    """
    backend = TRACKERS[name]
    missing = [module for module in backend.modules if not _installed(module)]
    if missing:
        raise TrackerUnavailableError(
            f"logger={name} needs {' and '.join(missing)}, which is not installed: run pip install {backend.pip} "
            f"(or pip install 'lora-harness[{backend.extra}]'), or choose logger=csv, which needs nothing"
        )


def open_tracker(name: str, run: TrackedRun) -> Backend:
    """A fresh tracker of backend ``name`` (what an earlier attempt of the run wrote there is replaced)."""
    require_tracker(name)
    backend = TRACKERS[name]
    tracker = backend(run)
    if backend.location:
        logger.info("logger=%s: training curves in %s", name, run.logs_dir / backend.location)
    return tracker


def step_scalars(record: Mapping[str, Any]) -> dict[str, float]:
    """A step-log record as ``train/<name>`` scalars; values the run could not measure (None) left out."""
    return {
        f"train/{key}": float(value)
        for key, value in record.items()
        if key not in ("step", "epoch") and value is not None
    }


def epoch_scalars(entry: Mapping[str, Any]) -> dict[str, float]:
    """A per-epoch history entry's numbers (training loss, evaluation metrics) as ``epoch/<name>`` scalars."""
    return {
        f"epoch/{key}": float(value)
        for key, value in entry.items()
        if key not in ("epoch", "step") and isinstance(value, int | float) and not isinstance(value, bool)
    }


def replay(tracker: Tracker, records: Sequence[Mapping[str, Any]], history: Sequence[Mapping[str, Any]]) -> None:
    """Send a resumed run's kept step records and epoch entries, in step order (an epoch after its last step)."""
    events = [(record["step"], 0, step_scalars(record)) for record in records]
    events += [(entry["step"], 1, epoch_scalars(entry)) for entry in history]
    for step, _, scalars in sorted(events, key=lambda event: event[:2]):
        tracker.log(step, scalars)
