"""Offline pipeline checks on a CPU in a few minutes: ``python -m experiments.quick glue``.

Writes small learnable data in the real file formats and a tiny random model with its tokenizer under
``runs/quick/``, runs the real Hydra command as a multirun over every method, and prints the table.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from experiments.synthetic import (
    e2e_vocabulary,
    write_e2e_folder,
    write_glue_folder,
    write_tiny_gpt2,
    write_tiny_roberta,
)

__all__ = ["main", "prepare_e2e", "prepare_glue"]

QUICK_ROOT = Path("runs/quick")


def prepare_glue(root: Path = QUICK_ROOT) -> tuple[Path, Path]:
    """Write (once) the quick GLUE data folder and the tiny RoBERTa; return their paths."""
    data, model = root / "glue_data", root / "tiny-roberta"
    if not (data / "STS-B" / "dev.tsv").is_file():
        write_glue_folder(data)
    if not (model / "config.json").is_file():
        write_tiny_roberta(model)
    return data, model


def prepare_e2e(root: Path = QUICK_ROOT) -> tuple[Path, Path]:
    """Write (once) the quick E2E folder and the tiny GPT-2; return their paths."""
    data, model = root / "e2e_data", root / "tiny-gpt2"
    if not (data / "test.txt").is_file():
        write_e2e_folder(data)
    if not (model / "config.json").is_file():
        write_tiny_gpt2(model, e2e_vocabulary(data))
    return data, model


def _run(command: list[str]) -> None:
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True)


def glue() -> None:
    """Both quick tasks x the three methods through ``python -m experiments.glue --multirun``."""
    prepare_glue()
    _run(
        [
            sys.executable,
            "-m",
            "experiments.glue",
            "--multirun",
            "experiment=glue_quick",
            "task=sst2,stsb",
            "method=lora,full_ft,bitfit",
        ]
    )
    from experiments.report import print_summary

    print_summary([QUICK_ROOT / "glue"])


def e2e() -> None:
    """The three methods through ``python -m experiments.e2e --multirun``, then the five metrics."""
    prepare_e2e()
    _run(
        [
            sys.executable,
            "-m",
            "experiments.e2e",
            "--multirun",
            "experiment=e2e_quick",
            "method=lora,full_ft,bitfit",
        ]
    )
    from experiments.report import print_summary

    print_summary([QUICK_ROOT / "e2e"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pipeline", choices=["glue", "e2e"], help="which runner to check end to end")
    args = parser.parse_args(argv)
    {"glue": glue, "e2e": e2e}[args.pipeline]()


if __name__ == "__main__":
    main()
