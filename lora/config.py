"""``LoRAConfig``: the hyperparameters of one LoRA layer, validated in one place.

Layers, :func:`lora.inject_lora`, adapter files and the PEFT export all take or record this one object
(adapter files store ``dataclasses.asdict(config)`` per layer), so a new field is added here only.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, fields, replace
from typing import Any

from lora.errors import LoRAConfigError

__all__ = ["INITS", "LoRAConfig", "alpha_for_scaling"]

# "default": loralib's Kaiming-uniform A and zero B; "gaussian": A ~ N(0, (1/r)^2) as PEFT's "gaussian";
# "pissa": A, B from the top-r SVD of W0, which is replaced by the residual (Meng et al. 2024).
INITS = ("default", "gaussian", "pissa")

# Field metadata key: False for fields that do not change what a trained layer computes (so an adapter
# recorded with another value still fits a layer). New fields count as functional unless marked.
_FUNCTIONAL = "functional"


def _fix(name: str, value: object, allowed: str, example: str) -> LoRAConfigError:
    return LoRAConfigError(f"{name} must be {allowed}, got {value!r}; e.g. LoRAConfig({name}={example})")


@dataclass(frozen=True)
class LoRAConfig:
    """Hyperparameters of a LoRA layer: ``h = W0 x + scaling * B A x`` (plus DoRA's magnitude if ``use_dora``).

    Attributes:
        r: rank of ``B A``, an integer >= 0 (0 disables LoRA).
        lora_alpha: finite number > 0; ``scaling = lora_alpha / r`` (``/ sqrt(r)`` with ``use_rslora``).
        lora_dropout: dropout probability in [0, 1) on the LoRA branch's input.
        use_rslora: rank-stabilised scaling ``lora_alpha / sqrt(r)`` (Kalajdzievski 2023).
        init: ``"default"``, ``"gaussian"`` or ``"pissa"`` (see :data:`INITS`).
        use_dora: weight-decomposed LoRA (Liu et al. 2024): a trainable per-output magnitude times the
            direction of ``W0 + scaling * B A``.
        merge_weights: whether ``eval()`` merges and ``train()`` unmerges, as in loralib.
    """

    r: int = 8
    lora_alpha: float = 8
    lora_dropout: float = field(default=0.0, metadata={_FUNCTIONAL: False})
    use_rslora: bool = False
    init: str = field(default="default", metadata={_FUNCTIONAL: False})
    use_dora: bool = False
    merge_weights: bool = field(default=True, metadata={_FUNCTIONAL: False})

    def __post_init__(self) -> None:
        r, alpha, dropout = self.r, self.lora_alpha, self.lora_dropout
        if isinstance(r, bool) or not isinstance(r, numbers.Integral) or r < 0:
            raise _fix("r", r, "a non-negative integer (0 disables LoRA)", "8")
        if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0 < alpha < math.inf:
            raise _fix("lora_alpha", alpha, "a finite number > 0", "16")
        if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0.0 <= dropout < 1.0:
            raise _fix("lora_dropout", dropout, "in [0, 1)", "0.1")
        for name in ("use_rslora", "use_dora", "merge_weights"):
            if not isinstance(getattr(self, name), bool):
                raise _fix(name, getattr(self, name), "True or False", "True")
        if self.init not in INITS:
            raise _fix("init", self.init, f"one of {', '.join(map(repr, INITS))}", "'pissa'")
        # Normalise numeric types (numpy scalars, ints for dropout) so records and comparisons are plain.
        object.__setattr__(self, "r", int(r))
        object.__setattr__(self, "lora_dropout", float(dropout))

    @property
    def scaling(self) -> float:
        """The factor of ``B A``: ``lora_alpha / r``, or ``lora_alpha / sqrt(r)`` with rsLoRA (0 when ``r == 0``)."""
        if self.r == 0:
            return 0.0
        return self.lora_alpha / (math.sqrt(self.r) if self.use_rslora else self.r)

    def functional(self) -> dict[str, Any]:
        """The fields that change what a trained layer computes (not dropout, init or merge mode)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.metadata.get(_FUNCTIONAL, True)}

    def with_rank(self, rank: int) -> LoRAConfig:
        """The same config at another rank, with ``lora_alpha`` chosen so that ``scaling`` is unchanged."""
        hint = self.lora_alpha * (math.sqrt(rank / self.r) if self.use_rslora else rank / self.r)
        alpha = alpha_for_scaling(self.scaling, rank, self.use_rslora, hint)
        return replace(self, r=rank, lora_alpha=alpha)


def alpha_for_scaling(scaling: float, rank: int, use_rslora: bool, hint: float | None = None) -> float:
    """A ``lora_alpha`` whose scaling at ``rank`` is ``scaling`` bit for bit where the arithmetic allows.

    ``hint`` (e.g. ``lora_alpha * rank / r``, exact for integer alphas) is tried first, then the float
    nearest to ``scaling * rank`` and its neighbours. Integral values come back as ``int`` (readable configs).
    """
    denominator = math.sqrt(rank) if use_rslora else rank
    nearest = scaling * denominator
    candidates = [] if hint is None else [hint]
    candidates.append(nearest)
    up = down = nearest
    for _ in range(4):
        up, down = math.nextafter(up, math.inf), math.nextafter(down, -math.inf)
        candidates += [up, down]
    alpha = next((c for c in candidates if c / denominator == scaling), nearest)
    return int(alpha) if float(alpha).is_integer() else alpha
