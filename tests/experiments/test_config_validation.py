"""Every bad value is refused before any loading: one line naming the key, the value, what is allowed and the fix."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments.config import compose_config
from experiments.e2e import run_e2e
from experiments.glue import run_glue
from experiments.schema import ConfigError, E2ERunConfig, GlueRunConfig, validate_config

REPO = Path(__file__).resolve().parents[2]
# A model folder that does not exist: any attempt to load it would fail differently, so a ConfigError proves
# the refusal came first.
NOWHERE = ["model.name_or_path=/nonexistent/model", "data.dir=/nonexistent/data"]
CACHE_IN_A_FILE = f"data.cache_dir={REPO / 'pyproject.toml'}"

GLUE_CASES = [
    ("train.max_grad_norm=-1", r"train\.max_grad_norm=-1\.0 is not allowed \(allowed: a number > 0, or null"),
    ("train.max_seq_length=1", r"train\.max_seq_length=1 is not allowed \(allowed: an integer >= 8\)"),
    ("data.max_train_examples=-5", r"data\.max_train_examples=-5 is not allowed \(allowed: an integer >= 1 or null"),
    ("data.max_eval_examples=0", r"data\.max_eval_examples=0 is not allowed"),
    ("train.max_steps=0", r"train\.max_steps=0 is not allowed"),
    ("train.weight_decay=-1", r"train\.weight_decay=-1\.0 is not allowed \(allowed: a number >= 0\)"),
    ("train.eval_batch_size=0", r"train\.eval_batch_size=0 is not allowed"),
    ("train.profile_steps=-1", r"train\.profile_steps=-1 is not allowed \(allowed: an integer >= 0\)"),
    ("train.warmup_ratio=1.5", r"train\.warmup_ratio=1\.5 is not allowed \(allowed: a number in \[0, 1\)\)"),
    ("train.lr=abc", r"train\.lr='abc' has the wrong type"),
    ("train.lr=-1e-3", r"train\.lr=-0\.001 is not allowed \(allowed: a number > 0\)"),
    ("method.use_rslora=maybe", r"method\.use_rslora='maybe' has the wrong type .*not a valid bool"),
    ("method.r=0", r"method\.r=0 is not allowed \(allowed: an integer >= 1\)"),
    ("method.lora_alpha=0", r"method\.lora_alpha=0\.0 is not allowed \(allowed: a number > 0\)"),
    ("method.lora_dropout=1", r"method\.lora_dropout=1\.0 is not allowed \(allowed: a number in \[0, 1\)\)"),
    ("method.bias=lora", r"method\.bias='lora' is not allowed .*did you mean method\.bias=lora_only\?"),
    ("+method.rank=4", r"method\.rank is not a setting of this run \(known: name, r, lora_alpha"),
    ("+train.lrr=1e-3", r"train\.lrr is not a setting of this run \(did you mean train\.lr\?\)"),
    ("+method.use_dora=true", r"method\.use_dora is not a setting of this run"),
    ("train.precision=bf8", r"train\.precision='bf8' is not allowed .*one of auto, fp32, bf16, fp16"),
    ("train.compile=fast", r"train\.compile='fast' is not allowed"),
    ("device=gpu", r"device='gpu' is not allowed \(allowed: auto, cpu, cuda or cuda:<index>\)"),
    ("seed=-1", r"seed=-1 is not allowed"),
    ("model.dtype=fp16", r"model\.dtype='fp16' is not allowed \(allowed: one of float32, bfloat16, float16\)"),
    (CACHE_IN_A_FILE, r"data\.cache_dir='.*pyproject\.toml' is not allowed \(allowed: a folder, created if missing"),
]


@pytest.mark.parametrize(("override", "message"), GLUE_CASES)
def test_bad_glue_values_are_refused_before_anything_loads(tmp_path: Path, override: str, message: str) -> None:
    cfg = compose_config("glue", ["task=rte", f"results_dir={tmp_path}", *NOWHERE, override])
    with pytest.raises(ConfigError, match=message):
        run_glue(cfg)
    assert not any(tmp_path.iterdir())  # no run directory is left behind


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("decode.num_beams=0", r"decode\.num_beams=0 is not allowed"),
        ("+decode.beams=3", r"decode\.beams is not a setting of this run \(did you mean decode\.num_beams\?\)"),
        ("train.label_smoothing=1", r"train\.label_smoothing=1\.0 is not allowed"),
        ("data.format=tsv", r"data\.format='tsv' is not allowed"),
        ("data.max_eval_mrs=0", r"data\.max_eval_mrs=0 is not allowed"),
        ("data.max_eval_mrs=1", r"data\.max_eval_mrs=1 is not allowed \(allowed: an integer >= 2 or null\); set"),
        (CACHE_IN_A_FILE, r"data\.cache_dir='.*pyproject\.toml' is not allowed"),
    ],
)
def test_bad_e2e_values_are_refused_before_anything_loads(tmp_path: Path, override: str, message: str) -> None:
    cfg = compose_config("e2e", [f"results_dir={tmp_path}", *NOWHERE, override])
    with pytest.raises(ConfigError, match=message):
        run_e2e(cfg)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("method", ["lora", "full_ft", "bitfit"])
def test_every_shipped_config_validates(method: str) -> None:
    for task in ("sst2", "mrpc", "cola", "rte", "stsb", "qnli", "qqp", "mnli"):
        for model in ("roberta-base", "roberta-large", "minilm-l6-h384", "tiny-roberta"):
            typed = validate_config(
                compose_config("glue", [f"task={task}", f"model={model}", f"method={method}"]), "glue"
            )
            assert isinstance(typed, GlueRunConfig) and typed.method.name == method
    for model in ("gpt2", "gpt2-medium", "gpt2-large", "smollm2-135m", "tiny-gpt2"):
        typed = validate_config(compose_config("e2e", [f"model={model}", f"method={method}"]), "e2e")
        assert isinstance(typed, E2ERunConfig)


def test_the_command_prints_one_line_without_a_traceback_and_exits_nonzero(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    started = time.perf_counter()
    process = subprocess.run(
        [sys.executable, "-m", "experiments.glue", f"results_dir={tmp_path}", *NOWHERE, "train.max_grad_norm=-1"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert process.returncode != 0
    assert "Traceback" not in process.stderr + process.stdout
    assert process.stderr.startswith("error: train.max_grad_norm=-1.0 is not allowed")
    assert "HYDRA_FULL_ERROR=1" in process.stderr
    assert not any(tmp_path.iterdir())
    assert time.perf_counter() - started < 60  # no model or data was loaded (a few seconds of imports)
