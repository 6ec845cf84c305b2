"""The harness's atomic writes: JSON through the library's one writer, and the clean-up of killed writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lora.files import FILE_MODE, atomic_write

__all__ = ["FILE_MODE", "atomic_write", "remove_stale_temporaries", "write_json_atomic"]

_TMP_SUFFIX = ".tmp"


def write_json_atomic(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    text = json.dumps(data, indent=2, sort_keys=False, default=str) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def remove_stale_temporaries(directory: str | Path) -> list[Path]:
    """Delete the temporaries of atomic writes that a kill interrupted, anywhere below ``directory``.

    Only safe while no other process writes there: call it with the directory's lock held.
    """
    stale = sorted(path for path in Path(directory).rglob(f".*{_TMP_SUFFIX}") if path.is_file())
    for path in stale:
        path.unlink(missing_ok=True)
    return stale
