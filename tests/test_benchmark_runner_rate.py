"""The runner-rate benchmark times the real runner and its bare step on the same job, and records no machine path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.runner_rate import main
from experiments.synthetic import write_glue_folder, write_tiny_roberta


def test_the_runner_and_its_bare_step_are_timed_on_the_same_job(tmp_path: Path, capsys) -> None:
    data = write_glue_folder(tmp_path / "glue", n_train=48, n_dev=8)
    model = write_tiny_roberta(tmp_path / "roberta")
    overrides = ["experiment=glue_quick", f"model.name_or_path={model}", f"data.dir={data}", "task=sst2"]
    main(["glue", *overrides, "train.max_steps=5", "--out", str(tmp_path / "out")])
    row = json.loads((tmp_path / "out" / "runner_rate.jsonl").read_text())
    assert (row["task"], row["model"], row["method"], row["steps"]) == ("sst2", "tiny-roberta", "lora", 5)
    assert row["runner_steps_per_s"] > 0 and row["bare_steps_per_s"] > 0
    assert row["runner_vs_bare"] == pytest.approx(row["runner_steps_per_s"] / row["bare_steps_per_s"])
    # all-in: the whole run's wall time, loading and evaluation included, so never faster than training alone
    assert 0 < row["runner_all_in_steps_per_s"] <= row["runner_steps_per_s"]
    assert row["runner_all_in_vs_bare"] == pytest.approx(row["runner_all_in_steps_per_s"] / row["bare_steps_per_s"])
    written = (tmp_path / "out" / "runner_rate.md").read_text() + json.dumps(row)
    assert str(tmp_path) not in written and "model.name_or_path=DIR" in written
    assert "runner_vs_bare" in capsys.readouterr().out


def test_a_job_without_max_steps_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"train\.max_steps=N"):
        main(["glue", "experiment=glue_quick", f"data.dir={tmp_path}", "--out", str(tmp_path / "out")])
