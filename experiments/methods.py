"""The fine-tuning methods, one small class each, in one registry: what trains, how the optimizer groups it,
what is saved, and how the report shows it.

Everything else (runners, run naming, results, the report) asks the method instead of comparing its name,
so a new method is a class here plus its ``conf/method/<name>.yaml`` (and its schema in
``experiments.schema`` when it has settings of its own).

In every method the new task head trains too; the paper leaves it out of the trainable count. Nothing else
of the pretrained backbone trains unless asked: BERT's pretrained pooler stays frozen, as in the authors'
code and PEFT, unless ``train_pooler`` is set (it then counts as trainable, not as head).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import torch.nn as nn

import lora
from experiments import schema as schemas

__all__ = [
    "METHODS",
    "AppliedMethod",
    "Display",
    "Method",
    "apply_method",
    "display",
    "get_method",
    "rank_stabilised",
]

POOLER = "pooler"


@dataclass(frozen=True)
class Display:
    """How the report shows a method: its name in tables, its colour and marker in plots, its row order."""

    label: str
    colour: str
    marker: str
    order: int


@dataclass(frozen=True)
class AppliedMethod:
    """What :meth:`Method.prepare` did, for the result file."""

    name: str
    adapted_modules: list[str] = field(default_factory=list)
    counts: lora.ParameterCount | None = None
    modules_to_save: list[str] = field(default_factory=list)  # trained whole beside the method's own tensors


class Method:
    """A fine-tuning method over a pretrained model, built from its ``method`` config group."""

    name: ClassVar[str]
    display: ClassVar[Display]
    rank_stabilised: ClassVar[bool] = False  # scaling alpha / sqrt(r) by definition (not an option's departure)
    schema: ClassVar[type]  # its config group's dataclass (experiments.schema)
    recipe: ClassVar[str]  # whose hyperparameters (experiments.recipes) it runs with
    artefact: ClassVar[str | None] = "trainable.safetensors"  # what save() writes, relative to the run dir

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = dict(config)

    # -- what trains ------------------------------------------------------------------------------------
    def prepare(self, model: nn.Module, head_modules: Sequence[str], train_pooler: bool = False) -> AppliedMethod:
        """Make the method's parameters (and the head) trainable, in place; freeze the rest.

        Raises:
            ValueError: ``train_pooler`` on a model without a pooler, or the method's own settings.
        """
        extra = [POOLER] if train_pooler else []
        if train_pooler and not any(n.split(".")[-1] == POOLER for n, _ in model.named_modules()):
            raise ValueError(
                f"model.train_pooler=true, but {type(model).__name__} has no pooler module; "
                "set model.train_pooler=false"
            )
        trained_whole = [*head_modules, *extra]
        adapted = self._make_trainable(model, trained_whole)
        return AppliedMethod(self.name, adapted, lora.count_parameters(model, head_modules), trained_whole)

    def _make_trainable(self, model: nn.Module, trained_whole: Sequence[str]) -> list[str]:
        raise NotImplementedError

    # -- how it trains ----------------------------------------------------------------------------------
    def param_groups(self, model: nn.Module, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        """AdamW groups: no weight decay on biases and norm weights (vectors), as HF's Trainer does."""
        decay, no_decay = [], []
        for param in model.parameters():
            if param.requires_grad:
                (decay if param.ndim >= 2 else no_decay).append(param)
        groups = [
            {"params": decay, "weight_decay": weight_decay, "lr": lr},
            {"params": no_decay, "weight_decay": 0.0, "lr": lr},
        ]
        return [group for group in groups if group["params"]]

    # -- what it keeps ----------------------------------------------------------------------------------
    def save(
        self, model: nn.Module, run_dir: Path, modules_to_save: Sequence[str], metadata: Mapping[str, Any]
    ) -> str | None:
        """Save what trained into ``run_dir``; return its path relative to it (None: nothing to save)."""
        if self.artefact is None:
            return None
        from safetensors.torch import save_file

        from experiments.atomic import atomic_write

        tensors = {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}
        info = {"method": self.name, **{k: str(v) for k, v in metadata.items()}}
        atomic_write(Path(run_dir) / self.artefact, lambda tmp: save_file(tensors, str(tmp), metadata=info))
        return self.artefact

    # -- how it is named ---------------------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        """The settings that tell configurations of this method apart (recorded and shown in the report)."""
        return {}

    def tag(self) -> str:
        """A readable run-directory label (the config hash makes it unique)."""
        return self.name

    def describe(self) -> str:
        """One line for the run banner."""
        return self.display.label


class FullFT(Method):
    """Full fine-tuning: every parameter trains; nothing is saved (the weights are the whole model)."""

    name = "full_ft"
    display = Display("Full FT", "tab:red", "s", 10)
    schema = schemas.FullFTConfig
    recipe = "full_ft"
    artefact = None

    def _make_trainable(self, model: nn.Module, trained_whole: Sequence[str]) -> list[str]:
        for param in model.parameters():
            param.requires_grad = True
        return []


class BitFit(Method):
    """BitFit (Ben Zaken et al.): every bias trains (LayerNorm's included), weights stay frozen."""

    name = "bitfit"
    display = Display("BitFit", "tab:green", "^", 20)
    schema = schemas.BitFitConfig
    recipe = "bitfit"

    def _make_trainable(self, model: nn.Module, trained_whole: Sequence[str]) -> list[str]:
        params = dict(model.named_parameters())
        if not any(name.endswith("bias") for name in params):
            raise ValueError(
                f"method=bitfit trains bias terms, and {type(model).__name__} has none (Llama-style models have "
                "no biases); choose method=lora or method=full_ft for this model"
            )
        for name, param in params.items():
            param.requires_grad = name.endswith("bias") or lora.in_modules(name, trained_whole)
        return []


class LoRA(Method):
    """LoRA (Hu et al. 2021): h = W0 x + (lora_alpha / r) B A x on the target matrices."""

    name = "lora"
    display = Display("LoRA", "tab:blue", "o", 0)
    schema = schemas.LoRAMethodConfig
    recipe = "lora"
    artefact = "adapter"

    def lora_config(self) -> lora.LoRAConfig:
        """The library's config for the adapted layers (a variant changes a field or two)."""
        return lora.LoRAConfig(
            r=self.config["r"],
            lora_alpha=self.config["lora_alpha"],
            lora_dropout=self.config.get("lora_dropout", 0.0),
            use_rslora=bool(self.config.get("use_rslora", False)),
            # Evaluation runs the training forward: a merged W0 + dW rounded to bf16 (under autocast, or
            # with W0 stored in bf16) would quantise dW against W0 and cost dev points.
            merge_weights=False,
        )

    def _make_trainable(self, model: nn.Module, trained_whole: Sequence[str]) -> list[str]:
        adapted = lora.inject_lora(model, list(self.config["targets"]), config=self.lora_config())
        lora.mark_only_lora_as_trainable(model, bias=self.config.get("bias", "none"), trainable_modules=trained_whole)
        return adapted

    def save(
        self, model: nn.Module, run_dir: Path, modules_to_save: Sequence[str], metadata: Mapping[str, Any]
    ) -> str | None:
        lora.save_adapter(
            model,
            Path(run_dir) / "adapter",
            bias=self.config.get("bias", "none"),
            modules_to_save=list(modules_to_save),
            metadata=dict(metadata),
        )
        return "adapter"

    def settings(self) -> dict[str, Any]:
        config = self.lora_config()
        return {
            "r": config.r,
            "lora_alpha": float(config.lora_alpha),
            "use_rslora": config.use_rslora,
            "targets": "+".join(self.config["targets"]),
        }

    def tag(self) -> str:
        s = self.settings()
        rs = "rs" if s["use_rslora"] else ""
        return f"{self.name}_r{s['r']}_{rs}a{s['lora_alpha']:g}_{'-'.join(self.config['targets'])}"

    def describe(self) -> str:
        s = self.settings()
        return f"{self.display.label} r={s['r']} alpha={s['lora_alpha']:g} targets={s['targets']}"


class RsLoRA(LoRA):
    """Rank-stabilised LoRA (Kalajdzievski 2023): scaling alpha / sqrt(r), so wide ranks keep learning."""

    name = "rslora"
    display = Display("rsLoRA", "tab:cyan", "v", 1)
    rank_stabilised = True

    def lora_config(self) -> lora.LoRAConfig:
        return replace(super().lora_config(), use_rslora=True)

    def tag(self) -> str:
        s = self.settings()
        return f"{self.name}_r{s['r']}_a{s['lora_alpha']:g}_{'-'.join(self.config['targets'])}"


class LoRAPlus(LoRA):
    """LoRA+ (Hayou et al. 2024): B learns ``loraplus_lr_ratio`` times faster than A, as PEFT's optimizer helper."""

    name = "loraplus"
    display = Display("LoRA+", "tab:purple", "D", 4)
    schema = schemas.LoRAPlusMethodConfig

    def param_groups(self, model: nn.Module, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        ratio = float(self.config["loraplus_lr_ratio"])
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        b = [p for n, p in named if "lora_B" in n]
        vectors = [p for n, p in named if "lora_B" not in n and p.ndim < 2]
        others = [p for n, p in named if "lora_B" not in n and p.ndim >= 2]
        groups = [  # as PEFT's create_loraplus_optimizer: vectors (biases) go with B, undecayed
            {"params": others, "weight_decay": weight_decay, "lr": lr},
            {"params": b, "weight_decay": weight_decay, "lr": lr * ratio},
            {"params": vectors, "weight_decay": 0.0, "lr": lr * ratio},
        ]
        return [group for group in groups if group["params"]]

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "loraplus_lr_ratio": float(self.config["loraplus_lr_ratio"])}

    def tag(self) -> str:
        return f"{super().tag()}_x{float(self.config['loraplus_lr_ratio']):g}"


class DoRA(LoRA):
    """DoRA (Liu et al. 2024): W = m * (W0 + dW) / ||W0 + dW||, a trainable magnitude per output beside A, B."""

    name = "dora"
    display = Display("DoRA", "tab:orange", "P", 2)

    def lora_config(self) -> lora.LoRAConfig:
        return replace(super().lora_config(), use_dora=True)


class PiSSA(LoRA):
    """PiSSA (Meng et al. 2024): A, B start from W0's top-r singular directions; W0 keeps the residual."""

    name = "pissa"
    display = Display("PiSSA", "tab:brown", "X", 3)

    def lora_config(self) -> lora.LoRAConfig:
        return replace(super().lora_config(), init="pissa")


METHODS: dict[str, type[Method]] = {m.name: m for m in (LoRA, RsLoRA, DoRA, PiSSA, LoRAPlus, FullFT, BitFit)}


def get_method(config: Mapping[str, Any]) -> Method:
    """The method a ``method`` config group names.

    Raises:
        ValueError: an unknown method name (the message lists the known ones).
    """
    name = config.get("name")
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)} (e.g. method=lora)")
    return METHODS[name](config)


def display(name: str) -> Display:
    """How the report shows the method called ``name`` (a method no longer registered: its bare name)."""
    return METHODS[name].display if name in METHODS else Display(name, "tab:gray", "x", 99)


def rank_stabilised(name: str) -> bool:
    """Whether the method called ``name`` scales by alpha / sqrt(r) by definition."""
    return name in METHODS and METHODS[name].rank_stabilised


def apply_method(
    model: nn.Module, method: Mapping[str, Any], head_modules: Sequence[str], train_pooler: bool = False
) -> AppliedMethod:
    """Prepare ``model`` for the method its config names (see :meth:`Method.prepare`)."""
    return get_method(method).prepare(model, head_modules, train_pooler)
