"""Data parallelism on CPU: two processes (torchrun, gloo) give the one-process run at the same global batch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from experiments.synthetic import write_glue_folder, write_tiny_roberta

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(prefix: list[str], overrides: list[str]) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [*prefix, "-m", "experiments.glue", *overrides], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def _result(root: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    (path,) = root.rglob("result.json")
    result = json.loads(path.read_text())
    return result, load_file(str(path.parent / "adapter" / "adapter.safetensors"))


@pytest.mark.slow
def test_two_processes_match_one_process_at_the_same_global_batch(tmp_path: Path) -> None:
    data = write_glue_folder(tmp_path / "data", n_train=64, n_dev=32)
    model = write_tiny_roberta(tmp_path / "model", dropout=0.0)  # dropout masks differ per rank by design
    common = [
        "experiment=glue_quick",
        f"model.name_or_path={model}",
        f"data.dir={data}",
        "method=lora",
        "train.epochs=2",
        "train.batch_size=16",
        "train.lr=1e-2",
    ]
    _run([sys.executable], [*common, f"results_dir={tmp_path / 'one'}"])
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}"]
    _run(torchrun, [*common, f"results_dir={tmp_path / 'two'}"])
    one, one_tensors = _result(tmp_path / "one")
    two, two_tensors = _result(tmp_path / "two")
    assert (one["world_size"], two["world_size"]) == (1, 2)
    for a, b in zip(one["metrics"]["per_epoch"], two["metrics"]["per_epoch"], strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
        assert b["accuracy"] == a["accuracy"]
    assert one_tensors.keys() == two_tensors.keys()
    for key, tensor in one_tensors.items():
        torch.testing.assert_close(two_tensors[key], tensor, rtol=1e-4, atol=1e-6, msg=key)
