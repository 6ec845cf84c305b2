"""LoRA layers with loralib 0.1.2's constructor arguments, parameter names and initialisation.

Each layer computes ``h = W0 x + scaling * B A x`` with ``W0`` frozen and ``scaling = lora_alpha / r``
(or ``lora_alpha / sqrt(r)`` with ``use_rslora``). Differences from loralib, all deliberate fixes:

* ``weight`` always holds the pretrained ``W0``. Merging (``eval()`` with ``merge_weights``, or
  :meth:`LoRALayer.merge`) keeps ``W0 + dW`` in a separate, non-persistent cache, so a ``state_dict()``
  taken in any mode is safe to load anywhere, and train/eval toggles never drift ``W0`` in bf16/fp16.
* Conv layers take any kernel size (int or tuple), groups, stride, padding and dilation, and apply
  ``lora_dropout`` to the LoRA branch instead of ignoring it.
* ``MergedLinear`` with no enabled slice is a plain linear layer instead of crashing.
* Dropout is a module (``nn.Identity`` when off), so whole models pickle and ``torch.save``.
* Out-of-range hyperparameters raise :class:`lora.errors.LoRAConfigError` (a ``ValueError``).

Every layer takes loralib's keywords or one :class:`lora.LoRAConfig` (``config=``), which also selects
the variants of :class:`Linear`: ``init="gaussian"`` or ``"pissa"`` and ``use_dora`` (see its docstring).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from lora._checks import check_enable_lora
from lora.config import LoRAConfig
from lora.errors import LoRAConfigError

__all__ = ["Conv1d", "Conv2d", "Conv3d", "ConvLoRA", "Embedding", "Linear", "LoRALayer", "MergedLinear"]


# loralib's defaults of the layer keywords, which a config= must leave untouched.
_LAYER_DEFAULTS = {"r": 0, "lora_alpha": 1, "lora_dropout": 0.0, "merge_weights": True, "use_rslora": False}


def resolve_config(config: LoRAConfig | None, given: dict[str, object], defaults: dict[str, object]) -> LoRAConfig:
    """``config``, or one built from the loose keywords; refuses both at once (which would win is unclear)."""
    if config is None:
        return LoRAConfig(**given)  # type: ignore[arg-type]
    if not isinstance(config, LoRAConfig):
        raise LoRAConfigError(f"config must be a lora.LoRAConfig, got {type(config).__name__}")
    clashing = [f"{key}={value!r}" for key, value in given.items() if value != defaults[key]]
    if clashing:
        raise LoRAConfigError(
            f"{', '.join(clashing)} given together with config={config!r}; pass the hyperparameters either as "
            "keywords or in the config, e.g. dataclasses.replace(config, r=16)"
        )
    return config


class LoRALayer:
    """Mixin holding the :class:`~lora.LoRAConfig` and the merge state shared by every LoRA layer."""

    config: LoRAConfig
    lora_dropout: nn.Module
    lora_A: nn.Parameter
    lora_B: nn.Parameter
    # Qualified type name of the module an injection replaced, so unloading can rebuild it.
    base_layer_type: str | None = None
    # The variants a layer type implements; others are refused at construction.
    supported_inits: tuple[str, ...] = ("default",)
    supports_dora: bool = False

    def __init__(
        self,
        r: int = 0,
        lora_alpha: float = 1,
        lora_dropout: float = 0.0,
        merge_weights: bool = True,
        use_rslora: bool = False,
        *,
        config: LoRAConfig | None = None,
    ) -> None:
        given = {"r": r, "lora_alpha": lora_alpha, "lora_dropout": lora_dropout}
        given |= {"merge_weights": merge_weights, "use_rslora": use_rslora}
        self.config = resolve_config(config, given, _LAYER_DEFAULTS)
        self._check_variants()
        dropout = self.config.lora_dropout
        self.lora_dropout = nn.Dropout(p=dropout) if dropout > 0 else nn.Identity()
        # W0 + dW while merged; never saved, moves with .to(), None while unmerged.
        self.register_buffer("_merged_weight", None, persistent=False)  # type: ignore[attr-defined]
        self._merged_versions: tuple[int, ...] | None = None

    def _check_variants(self) -> None:
        kind = f"lora.{type(self).__name__}"
        if self.config.use_dora and not self.supports_dora:
            raise LoRAConfigError(
                f"{kind} does not support use_dora=True: DoRA is implemented for lora.Linear (nn.Linear and "
                "GPT-2 Conv1D adapted whole); set use_dora=False or target only such modules (for GPT-2, "
                "the whole c_attn instead of the Wq/Wv slices)"
            )
        if self.config.init not in self.supported_inits:
            raise LoRAConfigError(
                f"{kind} does not support init={self.config.init!r} (it supports "
                f"{', '.join(map(repr, self.supported_inits))}); use init='default' or target other modules"
            )

    # -- the hyperparameters, read from the config ------------------------------------------------
    @property
    def r(self) -> int:
        return self.config.r

    @property
    def lora_alpha(self) -> float:
        return self.config.lora_alpha

    @property
    def use_rslora(self) -> bool:
        return self.config.use_rslora

    @property
    def merge_weights(self) -> bool:
        return self.config.merge_weights

    @property
    def scaling(self) -> float:
        return self.config.scaling

    # -- subclasses provide these -------------------------------------------------------------
    @property
    def frozen_weight(self) -> nn.Parameter:
        """The pretrained weight ``W0`` that LoRA adapts, in the wrapped layer's own layout."""
        return self.weight  # type: ignore[attr-defined]

    def delta_weight(self) -> torch.Tensor:
        """``scaling * B A`` reshaped to the layout of :attr:`frozen_weight`."""
        raise NotImplementedError

    def pretrained_weight(self) -> torch.Tensor:
        """The pretrained weight the adapter is relative to; differs from ``weight`` only after a PiSSA init."""
        return self.frozen_weight

    def as_plain_lora(self) -> tuple[LoRAConfig, torch.Tensor, torch.Tensor]:
        """``(config, A, B)`` of a LoRA that computes this layer's outputs on :meth:`pretrained_weight`."""
        return self.config, self.lora_A, self.lora_B

    # -- merge state ------------------------------------------------------------------------------
    @property
    def has_lora(self) -> bool:
        """Whether this layer carries LoRA parameters (``r > 0`` and at least one adapted slice)."""
        return self.r > 0 and "lora_A" in self._parameters  # type: ignore[attr-defined]

    @property
    def merged(self) -> bool:
        """Whether forward uses the cached ``W0 + dW`` instead of the two-branch computation."""
        return self._merged_weight is not None  # type: ignore[attr-defined]

    def merged_weight(self) -> torch.Tensor:
        """``W0 + dW`` computed in fp32 and rounded once to the dtype of ``W0``."""
        weight = self.frozen_weight
        if not self.has_lora:
            return weight.detach().clone()
        with torch.no_grad():
            return self._merged_float().to(weight.dtype)

    def _merged_float(self) -> torch.Tensor:
        return self.frozen_weight.float() + self.delta_weight().float()

    def merge(self) -> None:
        """Use ``W0 + dW`` in forward (zero added latency) without touching ``weight``."""
        if self.has_lora:
            self._merged_weight = self.merged_weight()
            self._merged_versions = self._versions()

    def unmerge(self) -> None:
        """Return to the two-branch forward; exact, since ``weight`` was never modified."""
        self._merged_weight = None
        self._merged_versions = None

    def _versions(self) -> tuple[int, ...]:
        adapter = [p._version for name, p in self._parameters.items() if name.startswith("lora_")]  # type: ignore[attr-defined]
        return (self.frozen_weight._version, *adapter)

    def _weight_for_forward(self) -> torch.Tensor:
        """The merged cache when merged (refreshed if W0, A or B changed in place), else ``W0``."""
        if not self.merged:
            return self.frozen_weight
        if not torch.compiler.is_compiling() and self._versions() != self._merged_versions:
            self.merge()
        return self._merged_weight  # type: ignore[attr-defined,return-value]

    def train(self, mode: bool = True):
        """Set the mode; with ``merge_weights``, eval merges and train unmerges (as loralib)."""
        nn.Module.train(self, mode)  # type: ignore[arg-type]
        if self.merge_weights:
            if mode:
                self.unmerge()
            else:
                self.merge()
        return self

    def _lora_extra_repr(self) -> str:
        if self.r == 0:
            return "r=0"
        kind = ", use_rslora=True" if self.use_rslora else ""
        kind += ", use_dora=True" if self.config.use_dora else ""
        kind += f", init={self.config.init!r}" if self.config.init != "default" else ""
        return f"r={self.r}, lora_alpha={self.lora_alpha}, scaling={self.scaling:g}{kind}"


def _lora_input(x: torch.Tensor, lora_a: torch.Tensor) -> torch.Tensor:
    """``x`` in A's dtype, except under autocast, where the matmul casts it (a cast here would be wasted)."""
    if x.dtype == lora_a.dtype or torch.is_autocast_enabled(x.device.type):
        return x
    return x.to(lora_a.dtype)


def _add_lora(result: torch.Tensor, after_a: torch.Tensor, lora_b: torch.Tensor, scaling: float) -> torch.Tensor:
    """``result + scaling * after_a @ lora_b.T`` as one GEMM whose epilogue adds ``result`` (addmm).

    Three kernels per forward (base, A, B-with-add) instead of five, and the scale costs nothing.
    """
    flat = result.reshape(-1, result.shape[-1])
    low_rank = after_a.reshape(-1, after_a.shape[-1]).to(flat.dtype)
    return torch.addmm(flat, low_rank, lora_b.to(flat.dtype).t(), alpha=scaling).view(result.shape)


def _kaiming_uniform_(tensor: torch.Tensor) -> None:
    # The default nn.Linear initialisation, as loralib uses for A.
    nn.init.kaiming_uniform_(tensor, a=math.sqrt(5))


class Embedding(LoRALayer, nn.Embedding):
    """``nn.Embedding`` with a LoRA update; A starts at zero and B normal (loralib's choice), no dropout."""

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        r: int = 0,
        lora_alpha: float = 1,
        merge_weights: bool = True,
        use_rslora: bool = False,
        *,
        config: LoRAConfig | None = None,
        **kwargs,
    ) -> None:
        nn.Embedding.__init__(self, num_embeddings, embedding_dim, **kwargs)
        if config is not None:  # loralib and PEFT apply no dropout to embedding lookups
            config = replace(config, lora_dropout=0.0)
        LoRALayer.__init__(self, r, lora_alpha, 0.0, merge_weights, use_rslora, config=config)
        if self.r > 0:
            self._create_lora_parameters(self.weight.device, self.weight.dtype)
            self.weight.requires_grad = False
        self.reset_parameters()

    def _create_lora_parameters(self, device: torch.device, dtype: torch.dtype) -> None:
        self.lora_A = nn.Parameter(torch.zeros((self.r, self.num_embeddings), device=device, dtype=dtype))
        self.lora_B = nn.Parameter(torch.zeros((self.embedding_dim, self.r), device=device, dtype=dtype))

    def reset_parameters(self) -> None:
        nn.Embedding.reset_parameters(self)
        if "lora_A" in self._parameters:
            self.reset_lora_parameters()

    def reset_lora_parameters(self) -> None:
        nn.init.zeros_(self.lora_A)
        nn.init.normal_(self.lora_B)

    def delta_weight(self) -> torch.Tensor:
        return (self.lora_B @ self.lora_A).transpose(0, 1) * self.scaling

    def _lookup(self, x: torch.Tensor, table: torch.Tensor, max_norm: float | None) -> torch.Tensor:
        return F.embedding(x, table, self.padding_idx, max_norm, self.norm_type, self.scale_grad_by_freq, self.sparse)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self._lookup(x, self._weight_for_forward(), self.max_norm)
        if self.has_lora and not self.merged:
            # max_norm renormalises rows in place: apply it to W0 only, never to the adapter.
            after_a = self._lookup(x, self.lora_A.transpose(0, 1), None)
            result = _add_lora(result, after_a, self.lora_B, self.scaling)
        return result

    def extra_repr(self) -> str:
        return f"{nn.Embedding.extra_repr(self)}, {self._lora_extra_repr()}"


class _LinearLoRA(LoRALayer, nn.Linear):
    """What ``Linear`` and ``MergedLinear`` share: the GPT-2 weight layout, init, and the fused forward."""

    fan_in_fan_out: bool
    supported_inits = ("default", "gaussian")

    def _finish_init(self, fan_in_fan_out: bool) -> None:
        # loralib's order of random draws (nn.Linear's init, then A's), so a seed gives loralib's values;
        # W0 takes its final layout first, as PiSSA's and DoRA's inits read it.
        nn.Linear.reset_parameters(self)
        if fan_in_fan_out:
            self.weight.data = self.weight.data.transpose(0, 1).contiguous()
        if "lora_A" in self._parameters:
            self.reset_lora_parameters()

    def reset_parameters(self) -> None:
        nn.Linear.reset_parameters(self)
        if "lora_A" in self._parameters:
            self.reset_lora_parameters()

    def reset_lora_parameters(self) -> None:
        if self.config.init == "gaussian":  # PEFT's "gaussian": std 1/r
            nn.init.normal_(self.lora_A, std=1 / self.r)
        else:
            _kaiming_uniform_(self.lora_A)
        nn.init.zeros_(self.lora_B)

    def _oriented(self, weight: torch.Tensor) -> torch.Tensor:
        return weight.transpose(0, 1) if self.fan_in_fan_out else weight

    def full_b(self) -> torch.Tensor:
        """B as an (out_features, rank) matrix, so that ``dW = scaling * full_b() @ lora_A``."""
        return self.lora_B

    def delta_weight(self) -> torch.Tensor:
        return self._oriented(self.full_b() @ self.lora_A) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = F.linear(x, self._oriented(self._weight_for_forward()), self.bias)
        if self.has_lora and not self.merged:
            after_a = F.linear(_lora_input(self.lora_dropout(x), self.lora_A), self.lora_A)
            result = _add_lora(result, after_a, self.full_b(), self.scaling)
        return result


class Linear(_LinearLoRA):
    """``nn.Linear`` with a LoRA update; ``fan_in_fan_out`` stores ``weight`` as (in, out) like GPT-2.

    Variants, chosen by ``config`` (each computes what PEFT's ``LoraConfig`` with the same option computes):

    * ``init="gaussian"``: A ~ N(0, (1/r)^2), B = 0.
    * ``init="pissa"``: ``B A = U_r S_r V_r^T / scaling`` (top-r SVD of W0, split as ``sqrt(S_r)`` on each
      side) and ``weight`` becomes the residual ``W0 - scaling * B A``; the initial factors stay in the
      buffers ``pissa_A0``/``pissa_B0``, so :meth:`as_plain_lora` can express the trained layer as a
      rank-2r LoRA of the pretrained W0 (adapter files and PEFT exports store that form).
    * ``use_dora``: ``h = m * (W x + scaling * B A x) / ||W + scaling * B A||_row`` with the trainable
      magnitude ``lora_magnitude_vector`` (PEFT's name), initialised to the row norms of W (``W0``'s
      per-output norms); the norm is detached from the graph (DoRA paper, section 4.3), and lora_dropout
      applies to the LoRA input as in PEFT.
    """

    supported_inits = ("default", "gaussian", "pissa")
    supports_dora = True

    def __init__(
        self,
        in_features: int,
        out_features: int,
        r: int = 0,
        lora_alpha: float = 1,
        lora_dropout: float = 0.0,
        fan_in_fan_out: bool = False,
        merge_weights: bool = True,
        use_rslora: bool = False,
        *,
        config: LoRAConfig | None = None,
        **kwargs,
    ) -> None:
        nn.Linear.__init__(self, in_features, out_features, **kwargs)
        LoRALayer.__init__(self, r, lora_alpha, lora_dropout, merge_weights, use_rslora, config=config)
        self.fan_in_fan_out = fan_in_fan_out
        if self.r > 0:
            self._create_lora_parameters(self.weight.device, self.weight.dtype)
            self.weight.requires_grad = False
        self._finish_init(fan_in_fan_out)

    def _create_lora_parameters(self, device: torch.device, dtype: torch.dtype) -> None:
        self.lora_A = nn.Parameter(torch.zeros((self.r, self.in_features), device=device, dtype=dtype))
        self.lora_B = nn.Parameter(torch.zeros((self.out_features, self.r), device=device, dtype=dtype))
        if self.config.init == "pissa":
            self.register_buffer("pissa_A0", torch.zeros_like(self.lora_A))
            self.register_buffer("pissa_B0", torch.zeros_like(self.lora_B))
        if self.config.use_dora:
            self.lora_magnitude_vector = nn.Parameter(torch.zeros(self.out_features, device=device, dtype=dtype))

    def reset_lora_parameters(self) -> None:
        if self.config.init == "pissa":
            self._pissa_init()
        else:
            super().reset_lora_parameters()
        if self.config.use_dora:
            with torch.no_grad():
                self.lora_magnitude_vector.copy_(self._row_norms())

    def _pissa_init(self) -> None:
        weight = self.frozen_weight
        if weight.is_meta:  # built on the meta device by inject_lora; initialised once W0 is adopted
            return
        if self.r > min(self.in_features, self.out_features):
            raise LoRAConfigError(
                f"init='pissa' needs r <= min(in_features, out_features) = "
                f"{min(self.in_features, self.out_features)} (the SVD has no more directions), got r={self.r}; "
                "lower r or use init='default'"
            )
        with torch.no_grad():
            w0 = self._oriented(weight.float())
            u, s, vh = torch.linalg.svd(w0, full_matrices=False)
            root = (s[: self.r] / self.scaling).sqrt()
            self.lora_A.copy_(root[:, None] * vh[: self.r])
            self.lora_B.copy_(u[:, : self.r] * root)
            self.pissa_A0.copy_(self.lora_A)
            self.pissa_B0.copy_(self.lora_B)
            # The residual from the stored (possibly rounded) factors, so the layer starts at exactly W0.
            residual = w0 - self.scaling * (self.lora_B.float() @ self.lora_A.float())
            weight.copy_(self._oriented(residual))

    def pretrained_weight(self) -> torch.Tensor:
        """``W0``; after a PiSSA init, rebuilt in float32 as ``W_res + scaling * B0 A0``."""
        if self.config.init != "pissa" or not self.has_lora:
            return self.frozen_weight
        with torch.no_grad():
            initial = self.pissa_B0.float() @ self.pissa_A0.float()
            return self.frozen_weight.float() + self._oriented(self.scaling * initial)

    def as_plain_lora(self) -> tuple[LoRAConfig, torch.Tensor, torch.Tensor]:
        """After a PiSSA init: ``W_res + s B A = W0 + s (B A - B0 A0) = W0 + s [B, -B0] [A; A0]``, rank 2r.

        The config keeps ``scaling`` (``lora_alpha`` is adjusted to the doubled rank) and DoRA; its init
        is ``"default"``, as the pretrained W0 must not be split again when the result is loaded.
        """
        if self.config.init != "pissa" or not self.has_lora:
            return super().as_plain_lora()
        with torch.no_grad():
            a = torch.cat([self.lora_A, self.pissa_A0.to(self.lora_A.dtype)], dim=0)
            b = torch.cat([self.lora_B, -self.pissa_B0.to(self.lora_B.dtype)], dim=1)
        return replace(self.config.with_rank(2 * self.r), init="default"), a, b

    def _row_norms(self) -> torch.Tensor:
        """``||W + scaling * B A||`` of each output row in float32, without gradient (DoRA's norm)."""
        with torch.no_grad():
            weight = self._oriented(self.frozen_weight.float())
            return torch.linalg.vector_norm(weight + self.scaling * (self.lora_B.float() @ self.lora_A.float()), dim=1)

    def _merged_float(self) -> torch.Tensor:
        merged = super()._merged_float()
        if not self.config.use_dora:
            return merged
        rows = self._oriented(merged)
        factor = self.lora_magnitude_vector.float() / torch.linalg.vector_norm(rows, dim=1)
        return self._oriented(rows * factor[:, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.config.use_dora and self.has_lora and not self.merged):
            return super().forward(x)
        result = F.linear(x, self._oriented(self.frozen_weight), self.bias)
        factor = (self.lora_magnitude_vector / self._row_norms().to(self.lora_magnitude_vector.dtype)).to(result.dtype)
        if isinstance(self.lora_dropout, nn.Identity) or not self.training:
            base = result if self.bias is None else result - self.bias
        else:  # W x on the dropped-out input, as PEFT: m/||.|| rescales the W x the LoRA branch sees
            x = self.lora_dropout(x)
            base = F.linear(x, self._oriented(self.frozen_weight))
        after_a = F.linear(_lora_input(x, self.lora_A), self.lora_A)
        lora_result = F.linear(after_a, self.lora_B).to(result.dtype)
        return result + (factor - 1) * base + factor * lora_result * self.scaling

    def extra_repr(self) -> str:
        fifo = ", fan_in_fan_out=True" if self.fan_in_fan_out else ""
        return f"{nn.Linear.extra_repr(self)}{fifo}, {self._lora_extra_repr()}"


class MergedLinear(_LinearLoRA):
    """A fused projection (e.g. GPT-2's q/k/v ``c_attn``) whose equal output slices are adapted separately.

    ``enable_lora`` has one flag per slice; each enabled slice gets its own rank-``r`` pair, stacked
    in ``lora_A`` (``r * n_enabled`` x in) and ``lora_B`` (``out / n_slices * n_enabled`` x ``r``).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        r: int = 0,
        lora_alpha: float = 1,
        lora_dropout: float = 0.0,
        enable_lora: Sequence[bool] = (False,),
        fan_in_fan_out: bool = False,
        merge_weights: bool = True,
        use_rslora: bool = False,
        *,
        config: LoRAConfig | None = None,
        **kwargs,
    ) -> None:
        nn.Linear.__init__(self, in_features, out_features, **kwargs)
        LoRALayer.__init__(self, r, lora_alpha, lora_dropout, merge_weights, use_rslora, config=config)
        self.enable_lora = check_enable_lora(enable_lora, out_features)
        self.fan_in_fan_out = fan_in_fan_out
        if self.r > 0 and any(self.enable_lora):
            self._create_lora_parameters(self.weight.device, self.weight.dtype)
            self.weight.requires_grad = False
        self._finish_init(fan_in_fan_out)

    @property
    def n_slices(self) -> int:
        return len(self.enable_lora)

    @property
    def n_enabled(self) -> int:
        return sum(self.enable_lora)

    @property
    def slice_size(self) -> int:
        return self.out_features // self.n_slices

    def _create_lora_parameters(self, device: torch.device, dtype: torch.dtype) -> None:
        n, size = self.n_enabled, self.slice_size
        self.lora_A = nn.Parameter(torch.zeros((self.r * n, self.in_features), device=device, dtype=dtype))
        self.lora_B = nn.Parameter(torch.zeros((size * n, self.r), device=device, dtype=dtype))
        # placement[g, k] = 1 where output slice g is the k-th enabled one.
        enabled = [i for i, flag in enumerate(self.enable_lora) if flag]
        placement = torch.zeros((self.n_slices, n), device=device)
        placement[enabled, torch.arange(n)] = 1.0
        self.register_buffer("_slice_placement", placement, persistent=False)

    def full_b(self) -> torch.Tensor:
        """B laid out for all outputs: (out_features, r * n_enabled), block-diagonal over enabled slices.

        Slice ``g`` (the k-th enabled one) reads columns ``k*r:(k+1)*r``; disabled slices are zero rows.
        With it the update is one rank-``r * n_enabled`` product, ``dW = full_b() @ lora_A``, built by a
        single broadcast multiply with the constant slice-placement matrix.
        """
        n, size, r = self.n_enabled, self.slice_size, self.r
        placement = self._slice_placement.to(self.lora_B.dtype).view(self.n_slices, 1, n, 1)
        per_slice = self.lora_B.view(n, size, r).transpose(0, 1).unsqueeze(0)  # (1, size, n, r)
        return (placement * per_slice).reshape(self.out_features, n * r)

    def extra_repr(self) -> str:
        fifo = ", fan_in_fan_out=True" if self.fan_in_fan_out else ""
        slices = f"enable_lora={self.enable_lora}{fifo}"
        return f"{nn.Linear.extra_repr(self)}, {slices}, {self._lora_extra_repr()}"


class ConvLoRA(LoRALayer, nn.Module):
    """A convolution (held as ``self.conv``) with a LoRA update of its weight.

    ``dW = B A`` is reshaped to the kernel; with kernel ``(k0, k1, ...)`` A is ``(r*k0, in*k1*...)`` and
    B is ``(out/groups*k0, r*k0)``, which reduces to loralib's shapes for a square ``Conv2d`` kernel
    (so its checkpoints load) and gives the right size for every other kernel, ``Conv1d`` and ``Conv3d``.
    """

    def __init__(
        self,
        conv_module: type[nn.modules.conv._ConvNd],
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        r: int = 0,
        lora_alpha: float = 1,
        lora_dropout: float = 0.0,
        merge_weights: bool = True,
        use_rslora: bool = False,
        *,
        config: LoRAConfig | None = None,
        **kwargs,
    ) -> None:
        nn.Module.__init__(self)
        self.conv = conv_module(in_channels, out_channels, kernel_size, **kwargs)
        LoRALayer.__init__(self, r, lora_alpha, lora_dropout, merge_weights, use_rslora, config=config)
        if self.r > 0:
            self._create_lora_parameters(self.conv.weight.device, self.conv.weight.dtype)
            self.conv.weight.requires_grad = False
        self.reset_parameters()

    @property
    def frozen_weight(self) -> nn.Parameter:
        return self.conv.weight

    def _create_lora_parameters(self, device: torch.device, dtype: torch.dtype) -> None:
        kernel = tuple(self.conv.kernel_size)
        k0, rest = kernel[0], math.prod(kernel[1:])
        out_per_group = self.conv.out_channels // self.conv.groups
        a_shape = (self.r * k0, self.conv.in_channels * rest)
        b_shape = (out_per_group * k0, self.r * k0)
        self.lora_A = nn.Parameter(torch.zeros(a_shape, device=device, dtype=dtype))
        self.lora_B = nn.Parameter(torch.zeros(b_shape, device=device, dtype=dtype))

    def reset_parameters(self) -> None:
        self.conv.reset_parameters()
        if "lora_A" in self._parameters:
            self.reset_lora_parameters()

    def reset_lora_parameters(self) -> None:
        _kaiming_uniform_(self.lora_A)
        nn.init.zeros_(self.lora_B)

    def delta_weight(self) -> torch.Tensor:
        return (self.lora_B @ self.lora_A).view(self.conv.weight.shape) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self._weight_for_forward()
        if not self.has_lora or self.merged:
            return self.conv._conv_forward(x, weight, self.conv.bias)
        delta = self.delta_weight().to(weight.dtype)
        if isinstance(self.lora_dropout, nn.Identity) or not self.training:
            return self.conv._conv_forward(x, weight + delta, self.conv.bias)
        # conv is linear in its input: conv(x, W0) + conv(dropout(x), dW) applies dropout to LoRA only.
        base = self.conv._conv_forward(x, weight, self.conv.bias)
        return base + self.conv._conv_forward(self.lora_dropout(x), delta, None)

    def extra_repr(self) -> str:
        return self._lora_extra_repr()


class Conv1d(ConvLoRA):
    """``nn.Conv1d`` with a LoRA update."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(nn.Conv1d, *args, **kwargs)


class Conv2d(ConvLoRA):
    """``nn.Conv2d`` with a LoRA update."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(nn.Conv2d, *args, **kwargs)


class Conv3d(ConvLoRA):
    """``nn.Conv3d`` with a LoRA update."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(nn.Conv3d, *args, **kwargs)
