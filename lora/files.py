"""Atomic file writes (the one writer of the library and the harness), and tensors as safetensors bytes."""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from safetensors.torch import save as safetensors_bytes

__all__ = ["FILE_MODE", "atomic_write", "dtype_name", "json_bytes", "safetensors_payload", "write_atomic"]

# Adapter files are shared artefacts: readable by everyone, whatever the umask of the process.
FILE_MODE = 0o644


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(temporary)`` beside ``path``, then publish it: readers see the old file or the new one.

    The temporary is in the same directory (same file system, so the rename is atomic), is flushed to disk,
    gets mode :data:`FILE_MODE` and replaces ``path`` with :func:`os.replace`. Its name is
    ``.<name>.<pid>.<random>.tmp``, so a temporary a kill left behind can be recognised and removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        write(temporary)
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        os.chmod(temporary, FILE_MODE)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    # Make the rename itself durable; not every platform lets a directory be opened for this.
    with contextlib.suppress(OSError):
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    return path


def write_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda temporary: temporary.write_bytes(data))


def json_bytes(document: Mapping[str, object]) -> bytes:
    """``document`` as indented UTF-8 JSON, refusing NaN/Infinity (not JSON, and unreadable elsewhere)."""
    return (json.dumps(document, indent=2, allow_nan=False) + "\n").encode("utf-8")


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` -> ``"float32"``, the spelling recorded in adapter configs."""
    return str(dtype).removeprefix("torch.")


def _standalone(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached CPU tensors that are contiguous and share no storage, as safetensors requires.

    Tied parameters (an LM head and its embedding) and views of larger storages are copied;
    every other tensor is passed through without a copy.
    """
    seen: set[tuple[str, int]] = set()
    out: dict[str, torch.Tensor] = {}
    for key, tensor in tensors.items():
        tensor = tensor.detach().cpu()
        storage = tensor.untyped_storage()
        identity = (str(tensor.device), storage.data_ptr())
        whole = storage.nbytes() == tensor.numel() * tensor.element_size()
        if identity in seen or not whole or not tensor.is_contiguous():
            tensor = tensor.clone(memory_format=torch.contiguous_format)
        else:
            seen.add(identity)
        out[key] = tensor
    return out


def safetensors_payload(
    tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None
) -> tuple[bytes, dict[str, torch.Tensor]]:
    """The safetensors file contents for ``tensors`` and the standalone tensors it was made from."""
    standalone = _standalone(tensors)
    return safetensors_bytes(standalone, metadata=dict(metadata or {})), standalone
