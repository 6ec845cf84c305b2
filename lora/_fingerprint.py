"""A small, dtype-aware fingerprint of a pretrained weight ``W0``, to recognise the base an adapter was trained on.

The fingerprint is the 4x4 sketch ``U^T W0 V`` with fixed pseudo-random +-1 matrices ``U`` and ``V``:
``W0 V`` in float32 on the weight's own device, then ``U^T`` in float64 on the CPU. It costs four
multiply-adds per weight element (about 0.1 s for a 4096x11008 matrix on one CPU core), is 16 numbers
in the config, and, unlike a hash of the bytes, still recognises ``W0`` loaded in another dtype:
rounding moves the sketch by about the dtype's unit roundoff (relative), while a merged update
``W0 + dW`` moves it by about ``|dW|_F / |W0|_F`` (around 10% for the paper's adapters).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from lora.files import dtype_name

__all__ = ["fingerprint", "fingerprint_distance", "tolerance"]

_PROBES = 4
_CHUNK_ELEMENTS = 1 << 22
# Float32 products of identical inputs differ by about 1e-7 (relative) between devices and BLAS libraries.
_SAME_DTYPE_TOLERANCE = 1e-5


def _signs(n: int, salt: int) -> torch.Tensor:
    """``(n, _PROBES)`` +-1 float64 entries from an integer hash: the same on every platform and torch version."""
    index = torch.arange(n, dtype=torch.int64)[:, None]
    probe = torch.arange(_PROBES, dtype=torch.int64)[None, :] + salt * _PROBES + 1
    mixed = (index * 0x9E3779B1 + probe * 0x85EBCA77) % 2**32
    mixed = ((mixed ^ (mixed >> 15)) * 0x2C1B3C6D) % 2**32
    mixed = mixed ^ (mixed >> 12)
    return 1.0 - 2.0 * ((mixed >> 7) & 1).to(torch.float64)


def fingerprint(weight: torch.Tensor) -> dict[str, object]:
    """The fingerprint of ``weight`` (any layout, any device) and the dtype it was taken in."""
    matrix = weight.detach().reshape(weight.shape[0], -1)
    rows, cols = matrix.shape
    right = _signs(cols, 1).to(device=matrix.device, dtype=torch.float32)
    step = max(1, _CHUNK_ELEMENTS // max(cols, 1))  # bounds the float32 copy of a bf16/fp16 weight
    projected = torch.cat([(matrix[i : i + step].float() @ right).double().cpu() for i in range(0, rows, step)])
    sketch = _signs(rows, 0).T @ projected
    return {"dtype": dtype_name(weight.dtype), "sketch": sketch.flatten().tolist()}


def fingerprint_distance(weight: torch.Tensor, recorded: Mapping[str, object]) -> float:
    """How far ``weight``'s sketch is from the recorded one, relative to the recorded one's size."""
    ours = torch.tensor(fingerprint(weight)["sketch"], dtype=torch.float64)
    theirs = torch.tensor(recorded["sketch"], dtype=torch.float64)
    scale = float(theirs.norm()) or 1.0
    return float((ours - theirs).norm()) / scale


def tolerance(dtype: torch.dtype, recorded_dtype: str) -> float:
    """The largest distance rounding between ``dtype`` and the recorded dtype can cause (0 if they agree).

    Rounding moves each element by at most the unit roundoff ``eps / 2``; the sketch, a sum of
    many such errors with random signs, moves by about that much relative. Twice ``eps`` leaves
    a wide margin for the spread of 16 random projections.
    """
    if dtype_name(dtype) == recorded_dtype:
        return _SAME_DTYPE_TOLERANCE
    recorded = getattr(torch, recorded_dtype, None)
    eps = [torch.finfo(d).eps for d in (dtype, recorded) if isinstance(d, torch.dtype) and d.is_floating_point]
    return 2 * max(eps, default=math.inf)
