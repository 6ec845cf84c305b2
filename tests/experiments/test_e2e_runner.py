"""The E2E runner end to end on a tiny GPT-2 and synthetic MR||text data, and the E2E data readers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from experiments.config import compose_config
from experiments.e2e import run_e2e
from experiments.e2e_data import load_e2e
from experiments.e2e_metrics import read_hypotheses, read_references
from experiments.e2e_metrics.formats import E2EFormatError
from experiments.glue_data import DataError
from experiments.step_log import STEP_LOG_FILE
from experiments.synthetic import e2e_vocabulary, write_e2e_folder, write_tiny_gpt2


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("e2e_assets")
    data = write_e2e_folder(root / "data", n_train=24, n_valid=4, n_test=5)
    return {"data": data, "model": write_tiny_gpt2(root / "model", e2e_vocabulary(data))}


def _run(assets, results: Path, *extra: str) -> dict:
    overrides = [
        "experiment=e2e_quick",
        f"model.name_or_path={assets['model']}",
        f"data.dir={assets['data']}",
        f"results_dir={results}",
        "train.epochs=2",
        "decode.num_beams=2",
        *extra,
    ]
    return run_e2e(compose_config("e2e", overrides))


@pytest.mark.parametrize("method", ["lora", "full_ft"])
def test_run_writes_five_metrics_outputs_and_counts(assets, tmp_path: Path, method: str) -> None:
    result = _run(assets, tmp_path, f"method={method}")
    run_dir = tmp_path / result["run_dir"]  # recorded relative to results_dir, its files relative to it
    text = (run_dir / "result.json").read_text()
    assert str(tmp_path) not in text and str(assets["model"]) not in text  # no machine path is recorded
    on_disk = json.loads(text)
    assert set(on_disk["metrics"]["test"]) >= {"BLEU", "NIST", "METEOR", "ROUGE_L", "CIDEr"}
    assert [e["epoch"] for e in on_disk["metrics"]["per_epoch"]] == [1, 2]
    assert "valid_loss" in on_disk["metrics"]["per_epoch"][-1]
    hypotheses = read_hypotheses(run_dir / on_disk["outputs"]["predictions"])
    references = read_references(run_dir / on_disk["outputs"]["references"])
    assert len(hypotheses) == len(references) == on_disk["data"]["test_mrs"] == 5
    assert all(len(refs) == 2 for refs in references)  # the synthetic test set has two references per MR
    if method == "lora":  # q and v slices of c_attn: 2 layers x 2 slices x r=4 x (32 + 32)
        assert on_disk["trainable_params"] == on_disk["lora_params"] == 1024
        assert on_disk["hyperparameters"]["num_beams"] == 2 and on_disk["hyperparameters"]["length_penalty"] == 0.9


def test_defaults_are_the_papers() -> None:
    cfg = compose_config("e2e", ["model=gpt2-medium"])
    assert (cfg.method.r, cfg.method.lora_alpha, cfg.method.lora_dropout) == (4, 32, 0.1)
    assert list(cfg.method.targets) == ["Wq", "Wv"] and cfg.seed == 110
    t = cfg.train
    assert (t.lr, t.batch_size, t.epochs, t.warmup_steps, t.weight_decay, t.label_smoothing) == (
        2e-4,
        8,
        5,
        500,
        0.01,
        0.1,
    )
    assert (t.adam_beta2, t.adam_eps, t.max_grad_norm, t.max_seq_length) == (0.999, 1e-6, None, 512)
    d = cfg.decode
    assert (d.num_beams, d.length_penalty, d.no_repeat_ngram_size, d.max_new_tokens) == (10, 0.9, 4, 64)
    assert compose_config("e2e", ["preset=repo"]).decode.length_penalty == 0.8


def test_challenge_csv_format_is_read(tmp_path: Path) -> None:
    for name in ("trainset.csv", "devset.csv", "testset_w_refs.csv"):
        (tmp_path / name).write_text('mr,ref\n"name[Alpha], eatType[pub]","Alpha is a pub."\n', encoding="utf-8")
    task = compose_config("e2e").task
    data = load_e2e(task, {"dir": str(tmp_path), "format": "auto"})
    assert data.source.startswith("csv:") and data.test[0]["mr"] == "name[Alpha], eatType[pub]"


def test_bad_data_is_reported(tmp_path: Path) -> None:
    task = compose_config("e2e").task
    with pytest.raises(DataError, match=r"holds neither the authors' files"):
        load_e2e(task, {"dir": str(tmp_path), "format": "auto"})
    for name in ("train.txt", "valid.txt", "test.txt"):
        (tmp_path / name).write_text("name : Alpha||Alpha is a pub .\nno separator here\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"train\.txt:2: no '\|\|' between the MR and the text"):
        load_e2e(task, {"dir": str(tmp_path), "format": "auto"})


def test_glue_task_is_refused_by_the_e2e_runner(assets, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"task=sst2 is a glue task; run it with python -m experiments.glue"):
        _run(assets, tmp_path, "task=sst2")


def test_without_java_scores_are_pending_until_rescored(assets, tmp_path: Path, monkeypatch) -> None:
    import experiments.e2e_metrics as metrics
    from experiments import e2e_eval

    def no_java(*args, **kwargs):
        raise metrics.JavaNotFoundError("java not found (test)")

    with monkeypatch.context() as patch:
        patch.setattr(metrics, "score_e2e", no_java)
        result = _run(assets, tmp_path, "method=lora")
    assert result["scoring_pending"] and result["metrics"]["test"] is None and result["main_metric_value"] is None
    run_dir = tmp_path / result["run_dir"]
    assert e2e_eval.main(["--run", str(run_dir)]) == 0
    rescored = json.loads((run_dir / "result.json").read_text())
    assert "scoring_pending" not in rescored and set(rescored["metrics"]["test"]) >= {"BLEU", "CIDEr"}
    assert rescored["main_metric_value"] == rescored["metrics"]["test"]["BLEU"]


def test_rescoring_a_directory_without_result_fails_clearly(tmp_path: Path, capsys) -> None:
    from experiments import e2e_eval

    assert e2e_eval.main(["--run", str(tmp_path)]) == e2e_eval.EXIT_FORMAT_ERROR
    assert "has no result.json" in capsys.readouterr().err


def test_init_adapter_is_honoured_and_a_missing_one_refused_before_loading(assets, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    first = _run(assets, tmp_path / "a", "method=lora")
    adapter = tmp_path / "a" / first["run_dir"] / first["saved"]
    started = _run(assets, tmp_path / "b", "method=lora", f"method.init_adapter={adapter}", "train.epochs=1")
    assert started["hyperparameters"]["init_from"] != "pretrained"
    trained_b = {k: v for k, v in load_file(str(adapter / "adapter.safetensors")).items() if "lora_B" in k}
    assert trained_b and all(v.abs().sum() > 0 for v in trained_b.values())  # a start that is not the zero init
    with pytest.raises(FileNotFoundError, match=r"method.init_adapter=.*nowhere: no adapter there"):
        _run(assets, tmp_path / "c", "method=lora", f"method.init_adapter={tmp_path / 'nowhere'}")
    assert not (tmp_path / "c").exists()  # refused before the run directory or any model was made


@pytest.mark.parametrize("method", ["rslora", "loraplus"])
def test_lora_variants_run_on_e2e(assets, tmp_path: Path, method: str) -> None:
    result = _run(assets, tmp_path, f"method={method}", "train.epochs=1")
    assert result["method"] == method and result["metrics"]["test"] is not None


def test_dora_on_gpt2_slices_is_refused_clearly(assets, tmp_path: Path) -> None:
    with pytest.raises(Exception, match=r"(?i)dora"):
        _run(assets, tmp_path, "method=dora", "train.epochs=1")
    assert not list(tmp_path.rglob("result.json"))


def test_a_test_set_the_scorer_cannot_read_is_refused_before_training(assets, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(assets["data"], data)
    mr = (data / "test.txt").read_text(encoding="utf-8").splitlines()[0].split("||")[0]
    (data / "test.txt").write_text(f"{mr}||One text .\n{mr}||Another text .\n", encoding="utf-8")
    with pytest.raises(E2EFormatError, match="a single MR with several references cannot be written"):
        _run({**assets, "data": data}, tmp_path / "runs")
    assert not list((tmp_path / "runs").rglob(STEP_LOG_FILE))  # not one training step was taken
