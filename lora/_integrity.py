"""Checks that an adapter is the one that was saved: config checksums, and finite tensors.

The checksums are SHA-256 digests of a canonical serialisation (sorted keys, no whitespace) of each
entry of ``adapter_config.json`` that shapes the adapter's outputs: every top-level field but the
free-form ``metadata``, and each layer record separately, so an edit is reported by name. The
``tensors_sha256`` entry is one of them, so the checksums cover the tensor bytes too. They guard
against accidental edits and mix-ups, not against someone who recomputes them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["UNSEALED_FIELDS", "edited_entries", "non_finite", "seal"]

# Fields an edit of which cannot change what the adapter computes or whether it loads.
UNSEALED_FIELDS = ("checksums", "metadata")


def _digest(value: object) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False, ensure_ascii=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _entries(document: Mapping[str, Any]) -> dict[str, object]:
    """The sealed entries by display name: ``bias``, ``layers['<name>']``, ..."""
    entries: dict[str, object] = {
        field: value for field, value in document.items() if field not in (*UNSEALED_FIELDS, "layers")
    }
    layers = document.get("layers")
    if isinstance(layers, Mapping):
        entries |= {f"layers[{name!r}]": record for name, record in layers.items()}
    return entries


def seal(document: Mapping[str, Any]) -> dict[str, str]:
    """The checksums to store under ``checksums``: one digest per sealed entry."""
    return {name: _digest(value) for name, value in _entries(document).items()}


def _shown(value: object, limit: int = 320) -> str:
    if isinstance(value, Mapping):
        text = ", ".join(f"{k}={v!r}" for k, v in value.items() if k != "base_weight_fingerprint")
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def edited_entries(document: Mapping[str, Any]) -> list[str]:
    """The entries whose content no longer has its recorded checksum, each with its current value."""
    recorded = document["checksums"]
    current = _entries(document)
    edited = [
        f"{name} (now {_shown(value)})" for name, value in current.items() if recorded.get(name) != _digest(value)
    ]
    edited += [f"{name} (removed)" for name in recorded if name not in current]
    return edited


def non_finite(tensors: Mapping[str, torch.Tensor]) -> list[str]:
    """``"<key> (n of m values)"`` for every floating-point tensor holding NaN or inf."""
    found = []
    for key, tensor in tensors.items():
        if tensor.is_floating_point() or tensor.is_complex():
            bad = int((~torch.isfinite(tensor)).sum())
            if bad:
                found.append(f"{key} ({bad} of {tensor.numel()} values)")
    return found
