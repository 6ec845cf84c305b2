"""Run a runner's own command-line entry point in this process, as ``python -m experiments.<family> ARGS`` would."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest


def run_main_in_process(family: str, args: list[str], cwd: Path, monkeypatch: pytest.MonkeyPatch) -> object:
    """The exit code of ``experiments.<family>.main`` with ``args`` as its argv, from the empty folder ``cwd``."""
    from hydra.core.global_hydra import GlobalHydra

    main = importlib.import_module(f"experiments.{family}").main
    monkeypatch.setattr(sys, "argv", [family, *args])
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    # `python -m experiments.glue` runs the module as __main__, so Hydra finds ../conf from its file; say so here.
    monkeypatch.setattr(main.__wrapped__.__wrapped__, "__module__", "__main__")
    GlobalHydra.instance().clear()
    try:
        with pytest.raises(SystemExit) as exited:
            main()
    finally:
        GlobalHydra.instance().clear()
    return exited.value.code
