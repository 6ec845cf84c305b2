"""Fail in seconds, with the overrides to use, when the Hugging Face hub cannot be reached.

Without this check, ``from_pretrained`` and ``load_dataset`` retry for about a minute offline before
raising a message that does not say how to point the harness at local files.
"""

from __future__ import annotations

import os
import socket
from functools import cache
from urllib.parse import urlparse

__all__ = ["HubUnavailableError", "hub_reachable", "require_hub"]

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
