"""Fail in seconds, with the overrides to use, when the Hugging Face hub cannot be reached or lacks a model.

Without this check, ``from_pretrained`` and ``load_dataset`` retry for about a minute offline before
raising a message that does not say how to point the harness at local files; a mistyped model name gets
the closest name the configs know (conf/model) or the closest folder beside the one named.
"""

from __future__ import annotations

import os
import socket
from functools import cache
from pathlib import Path
from urllib.parse import urlparse

from omegaconf import OmegaConf

from experiments.config import CONF_DIR
from experiments.suggest import closest

__all__ = ["HubUnavailableError", "hub_reachable", "model_suggestion", "require_hub", "require_hub_model"]

LOCAL_OVERRIDES = (
    "model.name_or_path=/path/to/model_folder (any folder from save_pretrained, e.g. one made by "
    "../shared/tools/fetch-models.sh)",
    "data.dir=/path/to/data (GLUE: <dir>/<TASK>/{train,dev}.tsv, e.g. ../shared/data/glue; "
    "E2E: <dir>/{train,valid,test}.txt, e.g. ../shared/data/e2e)",
)


class HubUnavailableError(RuntimeError):
    """The hub is needed for a name that is not a local folder, and it cannot be reached."""


@cache
def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub answers a TCP connection within ``timeout`` seconds (and offline mode is off)."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes"}:
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def require_hub(what: str, *overrides: str) -> None:
    """Raise :class:`HubUnavailableError` naming the local overrides if the hub is unreachable."""
    if hub_reachable():
        return
    hints = "\n  ".join(overrides or LOCAL_OVERRIDES)
    raise HubUnavailableError(
        f"cannot load {what}: the Hugging Face hub is unreachable (offline, or HF_HUB_OFFLINE=1). "
        f"Use local files instead:\n  {hints}"
    )


def _folders_beside(value: str) -> dict[str, str]:
    """The folders beside the one ``value`` names, by name, spelled as ``value`` is (``~/...`` stays)."""
    parent = Path(value).parent
    if parent == Path(".") or not parent.expanduser().is_dir():
        return {}
    return {child.name: str(parent / child.name) for child in sorted(parent.expanduser().iterdir()) if child.is_dir()}


def _model_sources(given: str) -> dict[str, str]:
    """Known model sources by name, later ones winning a shared name: the folders beside conf/model's local
    ones, conf/model's own values (hub names and folders), and the folders beside ``given``."""
    configured = [str(OmegaConf.load(path).name_or_path) for path in sorted((CONF_DIR / "model").glob("*.yaml"))]
    sources: dict[str, str] = {}
    for value in configured:
        sources.update(_folders_beside(value))
    sources.update({Path(value).name: value for value in configured})
    sources.update(_folders_beside(given))
    return sources


def model_suggestion(name_or_path: str) -> str:
    """`` (did you mean model.name_or_path=<closest>?)`` for a near miss of a known model, else ``''``."""
    sources = _model_sources(name_or_path)
    near = closest(Path(name_or_path).name, sorted(sources))
    if near is None or sources[near] == name_or_path:
        return ""
    return f" (did you mean model.name_or_path={sources[near]}?)"


@cache
def require_hub_model(name: str) -> None:
    """Raise unless the hub is reachable and hosts model ``name``; the error suggests the closest known name."""
    require_hub(f"model {name!r}{model_suggestion(name)}")
    from huggingface_hub import repo_exists
    from huggingface_hub.errors import HFValidationError

    try:
        found = repo_exists(name)
    except HFValidationError:
        found = False
    if not found:
        raise FileNotFoundError(
            f"model.name_or_path={name} is neither a local folder nor a model on the Hugging Face hub"
            f"{model_suggestion(name)}; give a hub model id or a folder written by save_pretrained"
        )
