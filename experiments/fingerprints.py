"""Content fingerprints: a result names the exact weights it came from without naming a machine's path."""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["model_fingerprint", "sha256_file"]

# What determines a model's outputs; tokenizer files and READMEs do not change the weights.
_MODEL_FILES = ("*.safetensors", "*.bin", "*.pt", "*.gguf", "config.json")
_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """The hex sha256 of a file's bytes, read in chunks (weights can be gigabytes)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def model_fingerprint(name_or_path: str) -> str | None:
    """``sha256:<hex>`` over a local model folder's weight and config files (names and bytes, sorted).

    None for a hub name that is not a local folder: the name (and the hub's revision) identifies it.
    """
    folder = Path(name_or_path).expanduser()
    if not folder.is_dir():
        return None
    files = sorted({p for pattern in _MODEL_FILES for p in folder.glob(pattern) if p.is_file()})
    if not files:
        return None
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.name}\0{sha256_file(path)}\n".encode())
    return f"sha256:{digest.hexdigest()}"
