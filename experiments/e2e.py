"""E2E NLG on GPT-2 (the paper's Table 3): LoRA vs full fine-tuning vs BitFit, beam search, five metrics.

    python -m experiments.e2e model=gpt2-medium method=lora
    python -m experiments.e2e model=smollm2-135m data.dir=../shared/data/e2e method=full_ft

:func:`run_e2e` is the plain function behind the command: the run skeleton (``experiments.run``) with the
E2E family (``experiments.tasks.e2e``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import hydra
from omegaconf import DictConfig

from experiments.cli import command
from experiments.run import run
from experiments.runner import register_hydra_resolvers, run_hydra_job

__all__ = ["main", "run_e2e"]

register_hydra_resolvers()


def run_e2e(cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    """Fine-tune one (model, method, seed) on E2E, decode the test MRs, score them; write ``result.json``."""
    return run(cfg, "e2e")


@command
@hydra.main(version_base="1.3", config_path="../conf", config_name="e2e")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point: one job, or each job of a ``--multirun`` sweep."""
    return run_hydra_job(run_e2e, cfg, "e2e")


if __name__ == "__main__":
    main()
