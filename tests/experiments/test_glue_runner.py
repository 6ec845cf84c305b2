"""The GLUE runner end to end on a tiny RoBERTa and synthetic data: results, counts, resume, bad input."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import lora
from experiments.config import compose_config
from experiments.glue import run_glue
from experiments.synthetic import write_glue_folder, write_tiny_roberta

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("glue_assets")
    return {
        "data": write_glue_folder(root / "data", n_train=64, n_dev=32),
        "model": write_tiny_roberta(root / "model"),
    }


def _overrides(assets: dict[str, Path], results: Path, *extra: str) -> list[str]:
    return [
        "experiment=glue_quick",
        f"model.name_or_path={assets['model']}",
        f"data.dir={assets['data']}",
        f"results_dir={results}",
        "train.epochs=2",
        "train.checkpoint_every_steps=2",
        *extra,
    ]


def _run(assets, results: Path, *extra: str) -> dict:
    return run_glue(compose_config("glue", _overrides(assets, results, *extra)))


@pytest.mark.parametrize("method", ["lora", "full_ft", "bitfit"])
def test_each_method_writes_a_complete_result(assets, tmp_path: Path, method: str) -> None:
    result = _run(assets, tmp_path, f"method={method}")
    run_dir = tmp_path / result["run_dir"]  # recorded relative to results_dir
    text = (run_dir / "result.json").read_text()
    assert str(tmp_path) not in text and str(assets["model"]) not in text  # no machine path is recorded
    assert str(assets["data"]) not in text  # the data source either
    on_disk = json.loads(text)
    assert on_disk["status"] == "completed" and on_disk["method"] == method and on_disk["task"] == "sst2"
    for key in (
        "seed",
        "hyperparameters",
        "metrics",
        "trainable_params",
        "trainable_params_with_head",
        "total_params",
        "wall_time_s",
        "peak_memory_bytes",
        "environment",
        "preset",
        "config",
    ):
        assert key in on_disk, key
    epochs = on_disk["metrics"]["per_epoch"]
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert 0.0 <= on_disk["metrics"]["best"]["accuracy"] <= 1.0
    assert on_disk["metrics"]["best"]["accuracy"] == max(e["accuracy"] for e in epochs)
    assert on_disk["metrics"]["last"] == epochs[-1]
    assert on_disk["environment"]["versions"]["torch"] == metadata.version("torch")
    assert not (run_dir / "checkpoint").exists()  # removed once the result is written
    assert on_disk["model_source"] == f"<local>/{assets['model'].name}"
    assert on_disk["model_fingerprint"].startswith("sha256:") and on_disk["config"]["results_dir"].startswith(
        "<local>/"
    )
    for path in run_dir.rglob("*"):
        assert not path.is_file() or path.stat().st_mode & 0o777 == 0o644, path


def test_lora_counts_equal_the_library_and_the_adapter_is_saved(assets, tmp_path: Path) -> None:
    result = _run(assets, tmp_path, "method=lora", "method.r=4", "method.targets=[Wq,Wk,Wv]")
    # 2 layers x 3 matrices x r=4 x (32 in + 32 out)
    assert result["trainable_params"] == result["lora_params"] == 2 * 3 * 4 * (32 + 32)
    head = 32 * 32 + 32 + 32 * 2 + 2
    assert result["trainable_params_with_head"] == result["trainable_params"] + head
    adapter = tmp_path / result["run_dir"] / result["saved"]  # recorded relative to the run directory
    assert (adapter / "adapter_config.json").is_file()


def test_bitfit_trains_only_biases_and_head(assets, tmp_path: Path) -> None:
    result = _run(assets, tmp_path, "method=bitfit")
    saved = load_file(tmp_path / result["run_dir"] / result["saved"])
    assert saved and all(name.endswith("bias") or name.startswith("classifier.") for name in saved)
    assert any(name.endswith("LayerNorm.bias") for name in saved)
    assert not any(name.endswith("LayerNorm.weight") for name in saved)


def test_regression_task_reports_pearson_and_spearman(assets, tmp_path: Path) -> None:
    result = _run(assets, tmp_path, "task=stsb", "method=lora")
    best = result["metrics"]["best"]
    assert {"dev/pearson", "dev/spearman", "pearson"} <= set(best)


def test_finished_run_is_not_repeated(assets, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    first = _run(assets, tmp_path, "method=bitfit")
    with caplog.at_level(logging.INFO, logger="experiments.run"):
        again = _run(assets, tmp_path, "method=bitfit")
    assert again["metrics"] == first["metrics"] and "already complete" in caplog.text


def _cli(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "experiments.glue", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


def _saved_step(manifest: Path) -> int:
    try:
        return json.loads(manifest.read_text())["state"]["global_step"]
    except (OSError, ValueError):  # replaced between listing and reading
        return -1


def test_killed_run_resumes_to_identical_metrics(assets, tmp_path: Path) -> None:
    args = ["method=lora", "train.epochs=3", "train.checkpoint_every_steps=1", "seed=3"]
    reference = _run(assets, tmp_path / "uninterrupted", *args)
    killed_root = tmp_path / "killed"
    process = _cli(*_overrides(assets, killed_root, *args))
    checkpoint = None
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        found = list(killed_root.rglob("checkpoint/state.json"))
        if found and _saved_step(found[0]) >= 5:
            checkpoint = found[0]
            break
        time.sleep(0.05)
    assert checkpoint is not None, "the run finished or stalled before a mid-run checkpoint appeared"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not list(killed_root.rglob("result.json"))
    resumed = _run(assets, killed_root, *args)
    assert resumed["resumed_from_step"] is not None and resumed["resumed_from_step"] >= 5
    assert resumed["metrics"]["per_epoch"] == reference["metrics"]["per_epoch"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["method.r=0"], r"method\.r=0 is not allowed \(allowed: an integer >= 1\)"),
        (["method.targets=[Wx]"], r"target 'Wx' matched no module"),
        (["data.dir=/nonexistent/glue"], r"data\.dir=/nonexistent/glue does not exist"),
        (["train.lr=0"], r"train\.lr=0\.0 is not allowed \(allowed: a number > 0\)"),
    ],
)
def test_bad_input_raises_clearly_and_leaves_no_result(assets, tmp_path: Path, extra, message) -> None:
    with pytest.raises(ValueError, match=message):
        _run(assets, tmp_path, *extra)
    assert not list(tmp_path.rglob("result.json"))


def test_malformed_and_mislabelled_files(assets, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    (bad / "SST-2").mkdir(parents=True)
    (bad / "SST-2" / "dev.tsv").write_text("sentence\tlabel\ngood\t1\n")
    (bad / "SST-2" / "train.tsv").write_text("sentence\tlabel\ngood\t1\nbad\t0\textra\n")
    with pytest.raises(ValueError, match=r"train\.tsv:3: malformed row"):
        _run(assets, tmp_path / "r", f"data.dir={bad}")
    (bad / "SST-2" / "train.tsv").write_text("sentence\tlabel\ngood\t1\nbad\tnegative\n")
    with pytest.raises(ValueError, match=r"train\.tsv:3: label 'negative' is not one of 0, 1"):
        _run(assets, tmp_path / "r", f"data.dir={bad}")
    assert not list(tmp_path.rglob("result.json"))


def test_cli_unknown_group_option_exits_nonzero_with_choices(assets, tmp_path: Path) -> None:
    process = _cli(*_overrides(assets, tmp_path, "task=nope"))
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 1
    assert output.startswith("error: task=nope is not an option (options: cola, e2e, mnli, mrpc, qnli, qqp, rte, sst2,")


def test_cli_run_directory_is_hydras_job_folder_and_overwrite_keeps_this_jobs_files(assets, tmp_path: Path) -> None:
    """Hydra's .hydra/ and glue.log land in the run directory; overwrite=true clears the old run, not them."""
    first = _cli(*_overrides(assets, tmp_path, "train.epochs=1"))
    output, _ = first.communicate(timeout=300)
    assert first.returncode == 0, output
    (result_path,) = tmp_path.rglob("result.json")
    run_dir = result_path.parent
    (run_dir / "stale.txt").write_text("from the discarded run")
    again = _cli(*_overrides(assets, tmp_path, "train.epochs=1", "overwrite=true"))
    output, _ = again.communicate(timeout=300)
    assert again.returncode == 0, output
    assert sorted(p.name for p in run_dir.iterdir()) == [
        ".hydra",
        "adapter",
        "glue.log",
        "inputs.json",
        "logs",
        "result.json",
        "train_log.jsonl",
    ]
    assert "overwrite=true" in (run_dir / ".hydra" / "overrides.yaml").read_text()  # this job's, kept
    assert (run_dir / "glue.log").read_text().count("classifier is new") == 2  # Hydra appends; this job's kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["glue"]  # nothing beside the run: no outputs/


def test_cli_bad_rank_exits_nonzero(assets, tmp_path: Path) -> None:
    process = _cli(*_overrides(assets, tmp_path, "method.r=-2"))
    output, _ = process.communicate(timeout=120)
    assert process.returncode != 0 and "error: method.r=-2 is not allowed (allowed: an integer >= 1)" in output
    assert "Traceback" not in output and not any(tmp_path.iterdir())  # refused before any run directory


def test_lora_library_counts_agree_with_manual_injection(assets) -> None:
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(str(assets["model"]), num_labels=2)
    lora.inject_lora(model, ["Wq", "Wv"], r=8, lora_alpha=16)
    lora.mark_only_lora_as_trainable(model, trainable_modules=["classifier"])
    assert lora.count_parameters(model).trainable == 2 * 2 * 8 * 64


def test_init_adapter_starts_from_another_tasks_lora_matrices(assets, tmp_path: Path) -> None:
    source = _run(assets, tmp_path, "method=lora")  # an sst2 adapter with a 2-class head
    adapter = tmp_path / source["run_dir"] / source["saved"]
    # STS-B has a 1-output head, so only the LoRA matrices can carry over; a vanishing lr keeps them.
    target = _run(assets, tmp_path, "task=stsb", "method=lora", f"method.init_adapter={adapter}", "train.lr=1e-12")
    assert target["hyperparameters"]["init_from"] == f"<results_dir>/{source['run_dir']}/adapter"
    before = load_file(str(adapter / "adapter.safetensors"))
    after = load_file(str(tmp_path / target["run_dir"] / target["saved"] / "adapter.safetensors"))
    lora_keys = [k for k in before if k.rpartition(".")[2].startswith("lora_")]
    assert lora_keys and all(torch.allclose(before[k], after[k], atol=1e-6) for k in lora_keys)
    assert before["classifier.out_proj.weight"].shape != after["classifier.out_proj.weight"].shape


def test_init_adapter_that_does_not_exist(assets, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"method\.init_adapter=/no/such/adapter: no adapter there"):
        _run(assets, tmp_path, "method=lora", "method.init_adapter=/no/such/adapter")


def test_the_saved_adapter_is_the_best_epochs(assets, tmp_path: Path) -> None:
    """The paper reports, and starts MRPC/RTE/STS-B from, the best epoch: the adapter kept must score it."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from experiments.glue_data import load_glue
    from experiments.glue_tasks import task_from_config
    from experiments.metrics import compute_metrics
    from experiments.tasks.glue import make_collate, predict, tokenize

    result = _run(assets, tmp_path, "method=lora", "train.epochs=4", "train.lr=0.05", "train.warmup_ratio=0")
    accuracies = [entry["accuracy"] for entry in result["metrics"]["per_epoch"]]
    assert result["saved_epoch"] == result["metrics"]["best_epoch"] == 1 + accuracies.index(max(accuracies))
    model = AutoModelForSequenceClassification.from_pretrained(str(assets["model"]), num_labels=2)
    lora.load_adapter(model, tmp_path / result["run_dir"] / result["saved"])
    tokenizer = AutoTokenizer.from_pretrained(str(assets["model"]))
    task = task_from_config(result["config"]["task"])
    dev = tokenize(load_glue(task, str(assets["data"]), None).evals["dev"], tokenizer, 64, False)
    with torch.no_grad():
        predictions, labels = predict(model.eval(), dev, make_collate(tokenizer, False), 64, torch.device("cpu"), "")
    assert compute_metrics(["accuracy"], predictions, labels)["accuracy"] == max(accuracies)


@pytest.mark.parametrize("method", ["rslora", "dora", "pissa", "loraplus"])
def test_each_lora_variant_runs_and_saves_an_adapter_that_loads(assets, tmp_path: Path, method: str) -> None:
    from transformers import AutoModelForSequenceClassification

    from experiments.methods import METHODS

    result = _run(assets, tmp_path, f"method={method}")
    assert result["method"] == method and result["method_info"]["label"] == METHODS[method].display.label
    assert f"/{method}_r8_" in f"/{result['run_dir']}"
    fresh = AutoModelForSequenceClassification.from_pretrained(str(assets["model"]), num_labels=2)
    lora.load_adapter(fresh, tmp_path / result["run_dir"] / result["saved"])  # onto the pretrained base


def test_a_window_of_steps_is_profiled_into_the_run_directory(assets, tmp_path: Path) -> None:
    plain = _run(assets, tmp_path / "plain", "method=lora")
    profiled = _run(assets, tmp_path / "profiled", "method=lora", "train.profile_steps=2", "train.profile_from_step=1")
    assert profiled["run_dir"] == plain["run_dir"]  # profiling does not change what the run is
    assert not (tmp_path / "plain" / plain["run_dir"] / "profile").exists()
    out = tmp_path / "profiled" / profiled["run_dir"] / "profile"
    summary = (out / "summary.txt").read_text(encoding="utf-8")
    assert summary.startswith("optimizer steps 2-3 (2 steps) on cpu\nwall time per step: ")
    assert "aten::addmm" in summary  # the step's operators, by self time
    names = [event.get("name") for event in json.loads((out / "trace.json").read_text(encoding="utf-8"))["traceEvents"]]
    assert names.count("Optimizer.step#AdamW.step") == 2  # exactly the window's steps


def test_a_profile_window_stops_where_the_epoch_ends_and_a_late_one_is_reported(
    assets, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    per_epoch = _run(assets, tmp_path / "plain", "method=lora")["steps"] // 2
    crossing = (f"train.profile_from_step={per_epoch - 1}", "train.profile_steps=3")  # the last step of epoch 1, ...
    result = _run(assets, tmp_path / "crossing", "method=lora", *crossing)
    out = tmp_path / "crossing" / result["run_dir"] / "profile"
    assert (out / "summary.txt").read_text(encoding="utf-8").startswith(f"optimizer steps {per_epoch}-{per_epoch} (1")
    names = [event.get("name") for event in json.loads((out / "trace.json").read_text(encoding="utf-8"))["traceEvents"]]
    assert names.count("Optimizer.step#AdamW.step") == 1 and "aten::argmax" not in names  # no evaluation in it

    with caplog.at_level(logging.WARNING, logger="experiments.step_profile"):
        late = _run(assets, tmp_path / "late", "method=lora", "train.profile_steps=2", "train.profile_from_step=99")
    assert "train.profile_from_step=99: the run has" in caplog.text
    assert not (tmp_path / "late" / late["run_dir"] / "profile").exists()
