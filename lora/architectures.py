"""The paper's matrix names (Wq, Wk, Wv, Wo and the FFN) mapped to each architecture's modules.

Paper names: ``Wq``, ``Wk``, ``Wv``, ``Wo`` (attention), ``Wup``/``Wdown`` (FFN in/out) and, for gated
FFNs, ``Wgate``; ``"FFN"`` expands to all FFN matrices of the architecture. GPT-2 computes q, k and v
with one fused ``c_attn``; there each paper name is a slice of it, so ``["Wq", "Wv"]`` adapts the q and
v slices with separate rank-r pairs and leaves k untouched (the paper's GPT-2 setup).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch.nn as nn

__all__ = ["ARCHITECTURES", "PAPER_MATRICES", "Architecture", "MatrixSite", "detect_architecture"]

PAPER_MATRICES = ("Wq", "Wk", "Wv", "Wo", "Wgate", "Wup", "Wdown")
FFN_MATRICES = ("Wgate", "Wup", "Wdown")


@dataclass(frozen=True)
class MatrixSite:
    """Where a paper matrix lives: a module-name regex and, for fused projections, its slice."""

    pattern: str
    slice_index: int | None = None
    n_slices: int = 1

    def matches(self, module_name: str) -> bool:
        return re.fullmatch(self.pattern, module_name) is not None


def _site(suffix: str, slice_index: int | None = None, n_slices: int = 1) -> MatrixSite:
    # Match the dotted suffix anywhere in the model (with or without a task-head wrapper).
    return MatrixSite(rf"(?:.*\.)?{suffix}", slice_index, n_slices)


@dataclass(frozen=True)
class Architecture:
    """One family of models that share module names."""

    name: str
    model_types: tuple[str, ...]
    matrices: dict[str, MatrixSite] = field(default_factory=dict)

    def site(self, paper_name: str) -> MatrixSite | None:
        return self.matrices.get(paper_name)


ARCHITECTURES: tuple[Architecture, ...] = (
    Architecture(
        "bert",
        ("bert", "roberta", "xlm-roberta", "camembert", "electra", "data2vec-text", "ernie"),
        {
            "Wq": _site(r"attention\.self\.query"),
            "Wk": _site(r"attention\.self\.key"),
            "Wv": _site(r"attention\.self\.value"),
            "Wo": _site(r"attention\.output\.dense"),
            "Wup": _site(r"intermediate\.dense"),
            "Wdown": _site(r"layer\.\d+\.output\.dense"),
        },
    ),
    Architecture(
        "distilbert",
        ("distilbert",),
        {
            "Wq": _site(r"attention\.q_lin"),
            "Wk": _site(r"attention\.k_lin"),
            "Wv": _site(r"attention\.v_lin"),
            "Wo": _site(r"attention\.out_lin"),
            "Wup": _site(r"ffn\.lin1"),
            "Wdown": _site(r"ffn\.lin2"),
        },
    ),
    Architecture(
        "gpt2",
        ("gpt2",),
        {
            "Wq": _site(r"attn\.c_attn", 0, 3),
            "Wk": _site(r"attn\.c_attn", 1, 3),
            "Wv": _site(r"attn\.c_attn", 2, 3),
            "Wo": _site(r"attn\.c_proj"),
            "Wup": _site(r"mlp\.c_fc"),
            "Wdown": _site(r"mlp\.c_proj"),
        },
    ),
    Architecture(
        "llama",
        ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "olmo", "olmo2", "granite"),
        {
            "Wq": _site(r"self_attn\.q_proj"),
            "Wk": _site(r"self_attn\.k_proj"),
            "Wv": _site(r"self_attn\.v_proj"),
            "Wo": _site(r"self_attn\.o_proj"),
            "Wgate": _site(r"mlp\.gate_proj"),
            "Wup": _site(r"mlp\.up_proj"),
            "Wdown": _site(r"mlp\.down_proj"),
        },
    ),
)


def detect_architecture(model: nn.Module) -> Architecture | None:
    """The architecture of ``model``: by ``config.model_type`` if known, else by its module names."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    for arch in ARCHITECTURES:
        if model_type in arch.model_types:
            return arch
    names = [name for name, _ in model.named_modules()]
    for arch in ARCHITECTURES:
        query = arch.site("Wq")
        if query is not None and any(query.matches(name) for name in names):
            return arch
    return None
