"""The runners' command line: a mistyped key, group option or model name ends in one line with the nearest
name, before anything is loaded and without writing anything, in the working directory or the run root."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.cli import INTERRUPTED, command
from tests.experiments.entry_point import run_main_in_process

REPO = Path(__file__).resolve().parents[2]


def _command(tmp_path: Path, family: str, *overrides: str, full_error: bool = False) -> subprocess.CompletedProcess:
    """``python -m experiments.<family>`` from an empty working directory, its runs under ``tmp_path/runs``."""
    cwd = tmp_path / "cwd"
    cwd.mkdir(parents=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    env.pop("HYDRA_FULL_ERROR", None)
    if full_error:
        env["HYDRA_FULL_ERROR"] = "1"
    return subprocess.run(
        [sys.executable, "-m", f"experiments.{family}", f"results_dir={tmp_path / 'runs'}", *overrides],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _main_in_process(
    tmp_path: Path, family: str, override: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> tuple[object, str]:
    """The command's own entry point in this process (its exit code and stderr), from an empty directory."""
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    code = run_main_in_process(family, [f"results_dir={tmp_path / 'runs'}", override], tmp_path / "cwd", monkeypatch)
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("family", "override", "line"),
    [
        ("glue", "methd=lora", "error: methd is not a setting of this run (did you mean method?)"),
        ("glue", "method.rr=4", "error: method.rr is not a setting of this run (did you mean method.r?)"),
        (
            "e2e",
            "decode.num_beam=4",
            "error: decode.num_beam is not a setting of this run (did you mean decode.num_beams?)",
        ),
        ("glue", "task=sst", "error: task=sst is not an option (did you mean task=sst2? options: cola, e2e, mnli,"),
        ("e2e", "model=robreta-base", "error: model=robreta-base is not an option (did you mean model=roberta-base?"),
        (
            "glue",
            "model.name_or_path=robreta-base",
            "error: cannot load model 'robreta-base' (did you mean model.name_or_path=roberta-base?): the Hugging "
            "Face hub is unreachable",
        ),
    ],
)
def test_a_near_miss_is_one_line_naming_the_nearest_name(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    family: str,
    override: str,
    line: str,
) -> None:
    code, stderr = _main_in_process(tmp_path, family, override, monkeypatch, capsys)
    assert code == 1
    assert stderr.startswith(line), stderr
    assert "Traceback" not in stderr and stderr.endswith("\n(run with HYDRA_FULL_ERROR=1 for the traceback)\n")
    assert not any((tmp_path / "cwd").iterdir())  # no outputs/ or multirun/ from Hydra
    leftovers = [p for p in (tmp_path / "runs").rglob("*") if p.is_file() and ".hydra" not in p.parts]
    assert [p.name for p in leftovers if p.suffix != ".log"] == []  # at most Hydra's own files: no run started


def test_the_command_line_prints_one_line_and_writes_nothing(tmp_path: Path) -> None:
    done = _command(tmp_path, "glue", "method=lorra")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == (
        "error: method=lorra is not an option (did you mean method=lora? options: bitfit, dora, full_ft, lora, "
        "loraplus, pissa, rslora)\n(run with HYDRA_FULL_ERROR=1 for the traceback)\n"
    )
    assert not any((tmp_path / "cwd").iterdir()) and not (tmp_path / "runs").exists()


def test_full_error_shows_the_traceback_of_a_composition_error_and_of_a_job_error(tmp_path: Path) -> None:
    composed = _command(tmp_path / "a", "glue", "method.rr=4", full_error=True)
    assert composed.returncode == 1 and "Traceback" in composed.stderr
    assert "Key 'rr' is not in struct" in composed.stderr
    job = _command(tmp_path / "b", "glue", "model.name_or_path=robreta-base", full_error=True)
    assert job.returncode == 1 and "Traceback" in job.stderr
    assert "HubUnavailableError: cannot load model 'robreta-base'" in job.stderr


def test_an_interrupt_is_one_line_and_status_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)

    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as exit_info:
        command(interrupted)()
    assert exit_info.value.code == 130
    assert capsys.readouterr().err == f"error: {INTERRUPTED}\n"  # how to resume, not torch's traceback
    assert "HYDRA_FULL_ERROR" not in os.environ
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(KeyboardInterrupt):  # the traceback, when asked for
        command(interrupted)()
