"""Compose the Hydra configs from Python (notebooks, tests) exactly as the command line would."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

from experiments.recipes import register_resolvers

__all__ = ["CONF_DIR", "compose_config"]

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def compose_config(name: str = "glue", overrides: Sequence[str] = ()) -> DictConfig:
    """The config ``python -m experiments.<name> <overrides>`` would run with."""
    from hydra import compose, initialize_config_dir

    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name=name, overrides=list(overrides))
