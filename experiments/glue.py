"""GLUE on RoBERTa (the paper's Table 2): LoRA vs full fine-tuning vs BitFit.

    python -m experiments.glue task=rte method=lora method.r=4 seed=2
    python -m experiments.glue --multirun task=sst2,mrpc method=lora,full_ft,bitfit

:func:`run_glue` is the plain function behind the command: the run skeleton (``experiments.run``) with the
GLUE family (``experiments.tasks.glue``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import hydra
from omegaconf import DictConfig

from experiments.cli import command
from experiments.run import run
from experiments.runner import register_hydra_resolvers, run_hydra_job

__all__ = ["main", "run_glue"]

register_hydra_resolvers()


def run_glue(cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    """Fine-tune one (model, task, method, seed) and write its ``result.json``; return the result."""
    return run(cfg, "glue")


@command
@hydra.main(version_base="1.3", config_path="../conf", config_name="glue")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point: one job, or each job of a ``--multirun`` sweep."""
    return run_hydra_job(run_glue, cfg, "glue")


if __name__ == "__main__":
    main()
