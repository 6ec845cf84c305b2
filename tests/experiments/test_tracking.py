"""Experiment tracking: each backend's output read back, resumes that never repeat a step, the run's identity
untouched by the choice of backend, and a missing package refused before anything loads."""

from __future__ import annotations

import csv
import importlib.util
import json
import logging
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn as nn

from experiments.config import compose_config
from experiments.distributed import DistContext
from experiments.glue import run_glue
from experiments.schema import ConfigError, validate_config
from experiments.step_log import STEP_LOG_FILE, read_step_log
from experiments.synthetic import write_glue_folder, write_tiny_roberta
from experiments.tracking import (
    TrackedRun,
    TrackerUnavailableError,
    epoch_scalars,
    open_tracker,
    replay,
    require_tracker,
    step_scalars,
)
from experiments.training import TrainSettings, fit

PARAMS = {"method": {"name": "lora", "r": 8, "targets": ["Wq", "Wv"]}, "seed": 0}
RECORDS = [
    {"step": s, "epoch": 1, "loss": 1.0 / s, "lr": 0.1, "grad_norm": 2.0, "examples_per_s": 8.0, "tokens_per_s": None}
    for s in (1, 2, 3)
]
ENTRY = {"epoch": 1, "step": 3, "train_loss": 0.6, "dev/accuracy": 0.75, "accuracy": 0.75, "report": {"x": 1}}
STEP_TAGS = {"train/loss", "train/lr", "train/grad_norm", "train/examples_per_s"}  # tokens_per_s unknown: left out
EPOCH_TAGS = {"epoch/train_loss", "epoch/dev/accuracy", "epoch/accuracy"}  # nested results left out


def _tracked(tmp_path: Path) -> TrackedRun:
    return TrackedRun(tmp_path / "logs", "glue/m/sst2/tag/seed0", PARAMS, "lora-harness", "offline")


def _write_one_epoch(name: str, run: TrackedRun) -> None:
    tracker = open_tracker(name, run)
    for record in RECORDS:
        tracker.log(record["step"], step_scalars(record))
    tracker.log(ENTRY["step"], epoch_scalars(ENTRY))
    tracker.close()


def _tensorboard(logs: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(logs / "tensorboard"))
    events.Reload()
    return {tag: [(event.step, event.value) for event in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def _csv(logs: Path) -> list[dict[str, str]]:
    with (logs / "metrics.csv").open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _series(rows: list[dict[str, str]]) -> dict[str, list[tuple[int, float]]]:
    series: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        series.setdefault(row["metric"], []).append((int(row["step"]), float(row["value"])))
    return series


def test_tensorboard_events_read_back_with_every_scalar_at_its_step(tmp_path: Path) -> None:
    _write_one_epoch("tensorboard", _tracked(tmp_path))
    scalars = _tensorboard(tmp_path / "logs")
    assert set(scalars) == STEP_TAGS | EPOCH_TAGS
    assert [step for step, _ in scalars["train/loss"]] == [1, 2, 3]
    assert [value for _, value in scalars["train/loss"]] == pytest.approx([1.0, 0.5, 1 / 3])
    assert scalars["epoch/dev/accuracy"] == [(3, 0.75)]


def test_csv_holds_one_row_per_scalar(tmp_path: Path) -> None:
    _write_one_epoch("csv", _tracked(tmp_path))
    rows = _csv(tmp_path / "logs")
    assert list(rows[0]) == ["step", "metric", "value"]
    assert len(rows) == 3 * len(STEP_TAGS) + len(EPOCH_TAGS)
    series = _series(rows)
    assert set(series) == STEP_TAGS | EPOCH_TAGS
    assert series["train/loss"] == [(1, 1.0), (2, 0.5), (3, pytest.approx(1 / 3, rel=1e-15))]
    assert series["epoch/train_loss"] == [(3, 0.6)]


def test_none_writes_nothing(tmp_path: Path) -> None:
    _write_one_epoch("none", _tracked(tmp_path))
    assert not any(tmp_path.iterdir())


def test_replay_orders_epoch_entries_after_the_steps_they_close() -> None:
    calls: list[tuple[int, set[str]]] = []

    class Recorder:
        def log(self, step: int, scalars: dict[str, float]) -> None:
            calls.append((step, set(scalars)))

        def close(self) -> None:
            pass

    later = {**ENTRY, "epoch": 2, "step": 6}
    replay(Recorder(), [*RECORDS, {**RECORDS[0], "step": 6}], [later, ENTRY])
    assert [step for step, _ in calls] == [1, 2, 3, 3, 6, 6]
    assert calls[3][1] == EPOCH_TAGS and calls[5][1] == EPOCH_TAGS  # each epoch after its last step


# -- MLflow and W&B: the real package when installed, else a fake module that records the calls ----------


class _FakeMlflowStore:
    """What the fake MLflow client keeps per tracking URI (a database, in the real one)."""

    def __init__(self) -> None:
        self.experiments: dict[str, str] = {}
        self.runs: dict[str, dict[str, Any]] = {}


def _fake_mlflow() -> types.ModuleType:
    stores: dict[str, _FakeMlflowStore] = {}

    class MlflowClient:
        def __init__(self, tracking_uri: str) -> None:
            self.store = stores.setdefault(tracking_uri, _FakeMlflowStore())

        def get_experiment_by_name(self, name: str) -> Any:
            found = self.store.experiments.get(name)
            return types.SimpleNamespace(experiment_id=found) if found else None

        def create_experiment(self, name: str, artifact_location: str | None = None) -> str:
            assert name not in self.store.experiments, "the real client refuses a second experiment of one name"
            self.store.experiments[name] = str(len(self.store.experiments))
            return self.store.experiments[name]

        def search_runs(self, experiment_ids: list[str]) -> list[Any]:
            return [
                types.SimpleNamespace(info=types.SimpleNamespace(run_id=run_id))
                for run_id, run in self.store.runs.items()
                if run["experiment"] in experiment_ids and not run["deleted"]
            ]

        def delete_run(self, run_id: str) -> None:
            self.store.runs[run_id]["deleted"] = True

        def create_run(self, experiment_id: str, run_name: str) -> Any:
            run_id = f"run{len(self.store.runs)}"
            self.store.runs[run_id] = {
                "experiment": experiment_id,
                "name": run_name,
                "deleted": False,
                "status": "RUNNING",
                "params": {},
                "metrics": {},
            }
            return types.SimpleNamespace(info=types.SimpleNamespace(run_id=run_id))

        def log_batch(self, run_id: str, metrics: tuple = (), params: tuple = ()) -> None:
            assert len(params) <= 100, "MLflow refuses more than 100 params in one batch"
            run = self.store.runs[run_id]
            for metric in metrics:
                run["metrics"].setdefault(metric.key, []).append((metric.step, metric.value))
            run["params"].update({param.key: param.value for param in params})

        def set_terminated(self, run_id: str) -> None:
            self.store.runs[run_id]["status"] = "FINISHED"

    module = types.ModuleType("mlflow")
    module.tracking = types.ModuleType("mlflow.tracking")  # type: ignore[attr-defined]
    module.tracking.MlflowClient = MlflowClient  # type: ignore[attr-defined]
    module.entities = types.ModuleType("mlflow.entities")  # type: ignore[attr-defined]
    module.entities.Metric = lambda key, value, timestamp, step: types.SimpleNamespace(key=key, value=value, step=step)  # type: ignore[attr-defined]
    module.entities.Param = lambda key, value: types.SimpleNamespace(key=key, value=value)  # type: ignore[attr-defined]
    module.stores = stores  # type: ignore[attr-defined]
    return module


def _installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


@pytest.fixture
def mlflow_runs(monkeypatch: pytest.MonkeyPatch):
    """A reader of the active MLflow runs under a logs folder, from the real store or the fake's records."""
    if _installed("mlflow") and _installed("sqlalchemy"):
        from mlflow.tracking import MlflowClient

        def real(logs: Path) -> list[dict[str, Any]]:
            client = MlflowClient(tracking_uri=f"sqlite:///{(logs / 'mlflow' / 'mlflow.db').resolve()}")
            experiment = client.get_experiment_by_name("lora-harness")
            return [
                {
                    "name": run.info.run_name,
                    "status": run.info.status,
                    "params": run.data.params,
                    "metrics": {
                        key: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)]
                        for key in run.data.metrics
                    },
                }
                for run in client.search_runs([experiment.experiment_id])
            ]

        return real
    fake = _fake_mlflow()
    for name in ("mlflow", "mlflow.tracking", "mlflow.entities"):
        monkeypatch.setitem(sys.modules, name, getattr(fake, name.partition(".")[2]) if "." in name else fake)
    if not _installed("sqlalchemy"):
        monkeypatch.setitem(sys.modules, "sqlalchemy", types.ModuleType("sqlalchemy"))

    def recorded(logs: Path) -> list[dict[str, Any]]:
        (store,) = fake.stores.values()
        return [run for run in store.runs.values() if not run["deleted"]]

    return recorded


def test_mlflow_run_holds_the_config_and_scalars_and_a_reopened_store_keeps_one_run(
    mlflow_runs, tmp_path: Path
) -> None:
    run = _tracked(tmp_path)
    _write_one_epoch("mlflow", run)
    tracker = open_tracker("mlflow", run)  # a resume: the earlier attempt's run gives way to the replayed one
    replay(tracker, RECORDS[:2], [])
    tracker.log(3, step_scalars(RECORDS[2]))
    tracker.close()
    (only,) = mlflow_runs(tmp_path / "logs")
    assert only["name"] == run.name and only["status"] == "FINISHED"
    assert only["params"]["method.r"] == "8" and only["params"]["method.targets"] == "['Wq', 'Wv']"
    assert set(only["metrics"]) == STEP_TAGS
    assert [step for step, _ in only["metrics"]["train/loss"]] == [1, 2, 3]


@pytest.fixture
def wandb_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]] | None]:
    """None with the real package; else a fake ``wandb`` whose runs record their init settings and logs."""
    if _installed("wandb"):
        monkeypatch.setenv("WANDB_SILENT", "true")
        yield None
        return
    runs: list[dict[str, Any]] = []

    def init(**settings: Any) -> Any:
        folder = Path(settings["dir"]) / "wandb" / f"offline-run-{len(runs)}"  # where the real one writes
        folder.mkdir(parents=True)
        (folder / f"run-{len(runs)}.wandb").write_bytes(b"records")
        record: dict[str, Any] = {"settings": settings, "logs": [], "finished": False}
        runs.append(record)
        return types.SimpleNamespace(
            log=lambda data, step: record["logs"].append((step, data)),
            finish=lambda: record.update(finished=True),
        )

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=init))
    yield runs


def test_wandb_runs_offline_under_logs_and_a_reopened_run_replaces_the_earlier(wandb_calls, tmp_path: Path) -> None:
    run = _tracked(tmp_path)
    _write_one_epoch("wandb", run)
    _write_one_epoch("wandb", run)
    (folder,) = (tmp_path / "logs" / "wandb").glob("offline-run-*")
    assert any(path.stat().st_size for path in folder.glob("run-*.wandb"))
    if wandb_calls is not None:  # the fake also shows what was sent
        last = wandb_calls[-1]
        assert last["settings"] == {
            "project": "lora-harness",
            "name": run.name,
            "dir": str(tmp_path / "logs"),
            "mode": "offline",
            "config": PARAMS,
        }
        assert [step for step, _ in last["logs"]] == [1, 2, 3, 3] and last["finished"]
        assert set(last["logs"][-1][1]) == EPOCH_TAGS


@pytest.mark.parametrize("name", ["mlflow", "wandb", "tensorboard"])
def test_a_missing_package_is_named_with_the_install_command_and_the_fallback(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setitem(sys.modules, name, None)  # import fails as for a package that is not installed
    with pytest.raises(
        TrackerUnavailableError, match=rf"logger={name} needs {name}\b.* not installed: run pip install {name} "
    ):
        require_tracker(name)
    with pytest.raises(TrackerUnavailableError, match="or choose logger=csv, which needs nothing"):
        require_tracker(name)


def test_a_missing_package_is_refused_before_anything_loads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)
    cfg = compose_config(
        "glue",
        [f"results_dir={tmp_path}", "model.name_or_path=/nonexistent/model", "data.dir=/nowhere", "logger=wandb"],
    )
    with pytest.raises(TrackerUnavailableError, match="logger=wandb"):
        run_glue(cfg)
    assert not any(tmp_path.iterdir())


def test_an_unknown_backend_is_refused_with_a_suggestion() -> None:
    cfg = compose_config("glue", ["logger.name=tensorbord"])
    with pytest.raises(ConfigError, match=r"logger\.name='tensorbord' .*one of tensorboard, csv, mlflow, wandb, none"):
        validate_config(cfg, "glue")
    with pytest.raises(ConfigError, match=r"did you mean logger\.name=tensorboard\?"):
        validate_config(cfg, "glue")


# -- through the training loop and the runner ---------------------------------------------------------------


class _Interrupted(RuntimeError):
    pass


def _fit(run_dir: Path, name: str, fail_at_epoch: int | None = None):
    """Two epochs of 6 steps (every step logged, a checkpoint every 2); evaluation may fail at an epoch."""
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    data = [(torch.randn(4, generator=torch.Generator().manual_seed(i)), float(i % 2)) for i in range(24)]

    def collate(items):
        return {"x": torch.stack([x for x, _ in items]), "y": torch.tensor([y for _, y in items])}

    def loss_sum(m, batch):
        return ((m(batch["x"]).squeeze(-1) - batch["y"]) ** 2).sum()

    def evaluate(m, epoch):
        if epoch == fail_at_epoch:
            raise _Interrupted("killed during evaluation")
        return {"score": 0.5 + epoch / 10}

    settings = TrainSettings(
        lr=1e-2, epochs=2, batch_size=4, log_every_steps=1, checkpoint_every_steps=2, compile=False
    )
    return fit(
        model,
        data,
        collate,
        loss_sum,
        evaluate,
        settings,
        run_dir,
        DistContext(0, 1, 0, torch.device("cpu")),
        fingerprint="t",
        param_groups=[{"params": list(model.parameters()), "lr": 1e-2}],
        open_tracker=lambda: open_tracker(name, TrackedRun(run_dir / "logs", "run", {}, "p", "offline")),
    )


@pytest.mark.parametrize("name", ["csv", "tensorboard"])
def test_a_resumed_run_shows_every_step_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    import experiments.training

    bars: list[tuple[int, int]] = []

    class RecordedProgress(experiments.training.RunProgress):
        def __init__(self, total_steps: int, done_steps: int, epochs: int, enabled: bool = True) -> None:
            bars.append((total_steps, done_steps))
            super().__init__(total_steps, done_steps, epochs, enabled)

    monkeypatch.setattr(experiments.training, "RunProgress", RecordedProgress)
    with pytest.raises(_Interrupted):
        _fit(tmp_path, name, fail_at_epoch=2)  # after step 12; the last checkpoint is step 10's
    outcome = _fit(tmp_path, name)
    assert outcome.resumed_from_step == 10 and outcome.train_steps_per_s > 0
    assert bars == [(12, 0), (12, 10)]  # one bar over the whole run, resumed where the run resumed
    series = _series(_csv(tmp_path / "logs")) if name == "csv" else _tensorboard(tmp_path / "logs")
    assert [step for step, _ in series["train/loss"]] == list(range(1, 13))
    assert series["epoch/score"] == [(6, pytest.approx(0.6)), (12, pytest.approx(0.7))]
    records = read_step_log(tmp_path / STEP_LOG_FILE)
    assert [r["step"] for r in records] == list(range(1, 13))
    assert all(r["examples_per_s"] > 0 and r["tokens_per_s"] is None for r in records)  # no token counts here


@pytest.fixture(scope="module")
def glue_assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tracking_assets")
    return {"data": write_glue_folder(root / "data", n_train=32, n_dev=16), "model": write_tiny_roberta(root / "model")}


def test_the_logger_leaves_the_run_identity_alone_and_the_run_tells_its_story(
    glue_assets, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    overrides = [
        "experiment=glue_quick",
        f"model.name_or_path={glue_assets['model']}",
        f"data.dir={glue_assets['data']}",
        f"results_dir={tmp_path}",
        "train.epochs=2",
        "train.log_every_steps=1",
    ]
    with caplog.at_level(logging.INFO, logger="experiments"):
        first = run_glue(compose_config("glue", [*overrides, "logger=csv"]))
    run_dir = tmp_path / first["run_dir"]
    assert json.loads((run_dir / "inputs.json").read_text()).keys() == {"data", "tokenizer", "model", "init_adapter"}
    assert first["train_steps_per_s"] > 0
    assert all(record["tokens_per_s"] > 0 for record in read_step_log(run_dir / STEP_LOG_FILE))
    series = _series(_csv(run_dir / "logs"))
    assert [step for step, _ in series["epoch/accuracy"]] == [2, 4]
    assert [value for _, value in series["epoch/accuracy"]] == [e["accuracy"] for e in first["metrics"]["per_epoch"]]
    story = [record.getMessage() for record in caplog.records]
    for expected in ("training examples", "trainable 2,048", "epoch 1/2, step 2:", "checkpoint saved", "best accuracy"):
        assert any(expected in message for message in story), expected
    assert sum("classifier is new" in message for message in story) == 1  # the new head, said once

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="experiments"):
        again = run_glue(compose_config("glue", [*overrides, "logger=none"]))
    assert again["run_dir"] == first["run_dir"] and "already complete" in caplog.text
