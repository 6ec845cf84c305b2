"""Trustworthy runs: checkpoints hold no executable data, run directories stay inside results_dir and have one
writer at a time, interrupted writes are cleaned, files are 0644, and recorded paths are portable."""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from experiments.atomic import atomic_write
from experiments.checkpointing import Checkpointer, CheckpointError, TrainState
from experiments.config import compose_config
from experiments.fingerprints import model_fingerprint, tokenizer_fingerprint
from experiments.glue import run_glue
from experiments.glue_data import glue_data_fingerprint
from experiments.glue_tasks import task_from_config
from experiments.models import load_tokenizer
from experiments.results import portable_config, portable_path
from experiments.run_lock import RunDirBusyError
from experiments.runner import INPUTS_FILE, plain_config, prepare_run_dir, release_run_dir, run_directory, run_hydra_job
from experiments.synthetic import write_glue_folder, write_tiny_roberta

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("safety_assets")
    return {
        "data": write_glue_folder(root / "data", n_train=32, n_dev=16),
        "model": write_tiny_roberta(root / "model"),
    }


def _overrides(assets: dict[str, Path], results: Path, *extra: str) -> list[str]:
    return [
        "experiment=glue_quick",
        "method=lora",
        f"model.name_or_path={assets['model']}",
        f"data.dir={assets['data']}",
        f"results_dir={results}",
        "train.epochs=2",
        *extra,
    ]


def _job(assets, results: Path, *extra: str) -> float | None:
    """One run as the command runs it (the run directory is unlocked when it ends, however it ends)."""
    return run_hydra_job(run_glue, compose_config("glue", _overrides(assets, results, *extra)), "glue")


def _run_dir(assets, results: Path, *extra: str) -> Path:
    return run_directory(plain_config(compose_config("glue", _overrides(assets, results, *extra))), "glue")


def _earlier_run_dir(assets, results: Path) -> Path:
    """The run directory as an earlier run of the same command left it: its inputs recorded."""
    run_dir = _run_dir(assets, results)
    run_dir.mkdir(parents=True)
    task = task_from_config(compose_config("glue", _overrides(assets, results)).task)
    inputs = {
        "data": glue_data_fingerprint(task, str(assets["data"])),
        "tokenizer": tokenizer_fingerprint(load_tokenizer(str(assets["model"]))),
        "model": model_fingerprint(str(assets["model"])),
        "init_adapter": None,
    }
    (run_dir / INPUTS_FILE).write_text(json.dumps(inputs))
    return run_dir


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


class _Planted:
    """Unpickling this creates a file: proof that a loader ran code from the run directory."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_planted_pickle_checkpoint_is_refused_never_unpickled(assets, tmp_path: Path) -> None:
    results, marker = tmp_path / "results", tmp_path / "pwned"
    checkpoint = _earlier_run_dir(assets, results) / "checkpoint" / "checkpoint.pt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(pickle.dumps(_Planted(marker)))
    before = _snapshot(results)
    with pytest.raises(
        CheckpointError, match=r"checkpoint\.pt is a pickle checkpoint, which is never loaded.*overwrite=true"
    ):
        _job(assets, results)
    assert not marker.exists()
    assert _snapshot(results) == before  # refused before anything in the run directory changed


def test_a_corrupt_checkpoint_is_refused_with_the_fix_and_overwrite_recovers(assets, tmp_path: Path) -> None:
    results = tmp_path / "results"
    state = _earlier_run_dir(assets, results) / "checkpoint" / "state.json"
    state.parent.mkdir(parents=True)
    state.write_text('{"format": 1, "fingerprint": "trunc')  # a torn write
    before = _snapshot(results)
    with pytest.raises(CheckpointError, match=r"the checkpoint in .*checkpoint cannot be resumed .*overwrite=true"):
        _job(assets, results)
    assert _snapshot(results) == before
    assert _job(assets, results, "overwrite=true") is not None
    assert not state.parent.exists()


def _tiny_training_objects(seed: int):
    torch.manual_seed(seed)
    model = nn.Linear(4, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (step + 1))
    return model, optimizer, scheduler, torch.amp.GradScaler("cpu", enabled=False)


def test_checkpoint_round_trips_exactly_and_detects_a_truncated_tensor_file(tmp_path: Path) -> None:
    model, optimizer, scheduler, scaler = _tiny_training_objects(0)
    model(torch.randn(3, 4)).sum().backward()
    optimizer.step()
    scheduler.step()
    checkpointer = Checkpointer(tmp_path / "checkpoint", "fp")
    checkpointer.save(model, optimizer, scheduler, scaler, TrainState(global_step=1, history=[{"epoch": 1}]))
    assert sorted(p.suffix for p in checkpointer.directory.iterdir()) == [".json", ".safetensors", ".safetensors"]
    other = _tiny_training_objects(1)
    state = checkpointer.load(*other)
    assert state == TrainState(global_step=1, history=[{"epoch": 1}])
    assert torch.equal(other[0].weight, model.weight)
    assert torch.equal(other[1].state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])
    assert other[2].state_dict() == scheduler.state_dict()

    (optimizer_file,) = checkpointer.directory.glob("optimizer.*.safetensors")
    optimizer_file.write_bytes(optimizer_file.read_bytes()[:-7])
    with pytest.raises(CheckpointError, match=r"optimizer\..*does not match its sha256 .*overwrite=true"):
        checkpointer.load(*_tiny_training_objects(2))


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("model.name", "../../../../x", "cannot be part of a run directory: use only letters"),
        ("model.name", "a/b", "cannot be part of a run directory: use only letters"),
        ("seed", "..", "has the wrong type"),  # the schema refuses it before any path is made
    ],
)
def test_config_values_cannot_place_a_run_outside_results_dir(
    assets, tmp_path: Path, key: str, value: str, message: str
) -> None:
    results = tmp_path / "results"
    with pytest.raises(ValueError, match=rf"{key}='{re.escape(value)}' {message}"):
        _job(assets, results, f"{key}={value}")
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing created, inside or outside


def test_a_second_run_of_a_busy_directory_is_refused_and_the_first_finishes_intact(assets, tmp_path: Path) -> None:
    results = tmp_path / "results"
    args = _overrides(assets, results, "train.epochs=3", "train.checkpoint_every_steps=1")
    run_dir = run_directory(plain_config(compose_config("glue", args)), "glue")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    first = subprocess.Popen(
        [sys.executable, "-m", "experiments.glue", *args], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True
    )
    deadline = time.time() + 120
    while time.time() < deadline and not (run_dir / ".lock").is_file():
        time.sleep(0.05)
    try:
        with pytest.raises(RunDirBusyError, match=rf"{run_dir} is in use by another run \(PID {first.pid}"):
            run_hydra_job(run_glue, compose_config("glue", args), "glue")
    finally:
        output, _ = first.communicate(timeout=300)
    assert first.returncode == 0, output
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "completed" and result["resumed_from_step"] is None
    assert not (run_dir / ".lock").exists()  # released on exit


def test_stale_temporaries_are_removed_at_start_and_files_are_0644(assets, tmp_path: Path) -> None:
    plain = plain_config(compose_config("glue", _overrides(assets, tmp_path)))
    run_dir = run_directory(plain, "glue")
    stale = [run_dir / ".result.json.x1y2.tmp", run_dir / "checkpoint" / ".state.json.abcd.tmp"]
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("torn")
    keep = run_dir / "checkpoint" / "state.json"
    keep.write_text("{}")
    (run_dir / INPUTS_FILE).write_text(json.dumps({"data": None, "model": None}))
    try:
        assert prepare_run_dir(plain, "glue", {"data": None, "model": None}) == (run_dir, None)
    finally:
        release_run_dir()
    assert not any(path.exists() for path in stale) and keep.is_file()
    written = atomic_write(tmp_path / "out.txt", lambda tmp: tmp.write_text("x"))
    assert written.stat().st_mode & 0o777 == 0o644


def test_recorded_paths_are_portable_and_the_model_is_fingerprinted(assets, tmp_path: Path) -> None:
    results = tmp_path / "results"
    assert portable_path(str(results / "glue" / "m" / "adapter"), results) == "<results_dir>/glue/m/adapter"
    assert portable_path("/home/someone/models/minilm") == "<local>/minilm"
    assert portable_path("roberta-base") == "roberta-base" and portable_path("../data/e2e") == "../data/e2e"
    recorded = portable_config({"results_dir": str(results), "model": {"name_or_path": str(assets["model"])}})
    assert recorded == {"results_dir": "<local>/results", "model": {"name_or_path": "<local>/model"}}
    fingerprint = model_fingerprint(str(assets["model"]))
    assert fingerprint is not None and fingerprint.startswith("sha256:") and len(fingerprint) == 71
    assert model_fingerprint("roberta-base") is None
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in assets["model"].iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    assert model_fingerprint(str(copy)) == fingerprint  # content, not location
    weights = next(copy.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    assert model_fingerprint(str(copy)) != fingerprint


def _flip_labels(source: Path, target: Path) -> Path:
    import shutil

    shutil.copytree(source, target)
    train = target / "SST-2" / "train.tsv"
    header, *rows = train.read_text(encoding="utf-8").splitlines()
    flipped = [f"{text}\t{1 - int(label)}" for text, label in (row.rsplit("\t", 1) for row in rows)]
    train.write_text("\n".join([header, *flipped]) + "\n", encoding="utf-8")
    return target


def test_a_finished_run_is_not_returned_for_other_data(assets, tmp_path: Path) -> None:
    results = tmp_path / "results"
    first = _job(assets, results)
    other = {**assets, "data": _flip_labels(assets["data"], tmp_path / "flipped")}
    run_dir = _run_dir(other, results)
    assert run_dir == _run_dir(assets, results)  # the config is the same; only the files differ
    before = (run_dir / "result.json").read_bytes()
    with pytest.raises(RuntimeError, match=r"made from other inputs \(data: \w+ there, \w+ now\)"):
        _job(other, results)
    assert (run_dir / "result.json").read_bytes() == before  # nothing lost
    assert _job(assets, results) == first  # the original inputs still find their result
    rerun = _job(other, results, "overwrite=true")
    result = json.loads((run_dir / "result.json").read_text())
    assert rerun is not None and result["inputs"]["data"] != json.loads(before)["inputs"]["data"]


def test_a_checkpoint_is_not_resumed_on_other_data(assets, tmp_path: Path) -> None:
    results = tmp_path / "results"
    run_dir = _run_dir(assets, results)
    try:
        prepare_run_dir(plain_config(compose_config("glue", _overrides(assets, results))), "glue", {"data": "a"})
    finally:
        release_run_dir()
    (run_dir / "checkpoint").mkdir()
    with pytest.raises(RuntimeError, match=r"other inputs \(data: a there, \w+ now; model: None there"):
        _job(assets, results)
    assert (run_dir / "checkpoint").is_dir() and not (run_dir / "result.json").exists()
