"""The original experiments' hyperparameters, per (model, method, task, preset), as Hydra defaults.

Configs say ``lr: ${recipe:lr}``; the ``recipe`` resolver looks the value up here from the composed
config's ``model.recipe``, ``method.name``, ``task.name`` and ``preset.name``. An explicit override
(``train.lr=1e-4``) replaces the interpolation, the Hydra way.

Sources (see ../shared/PAPER.md): Hu et al. 2021, Table 9 (RoBERTa LoRA), and the authors' scripts
(microsoft/LoRA examples/NLU), which differ in three places, offered as presets:

* ``paper``: alpha 8 (base), the listed batch as the global batch, RoBERTa-large CoLA lr 2e-4;
* ``repo``: alpha 16 (base), the listed batch per GPU on 8 GPUs (CoLA on 2), large CoLA lr 3e-4.

Full fine-tuning and BitFit are not run in the paper (it quotes prior work); their defaults here are
those works' usual recipes: RoBERTa's (Liu et al. 2019: lr 2e-5 base / 1e-5 large, batch 16, 10 epochs)
and BitFit's (Ben Zaken et al. 2022: lr in 1e-4..1e-3; 5e-4 here, LoRA's batch and epochs).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from omegaconf import DictConfig, OmegaConf

__all__ = ["PRESETS", "E2ERecipe", "GlueRecipe", "e2e_recipe", "glue_recipe", "register_resolvers"]

PRESETS = ("paper", "repo")


@dataclass(frozen=True)
class GlueRecipe:
    """One run's defaults; ``batch_size`` is the global batch."""

    lr: float
    batch_size: int
    epochs: int
    max_seq_length: int
    lora_alpha: float
    source: str = "Hu et al. 2021, Table 9"
    r: int = 8
    lora_dropout: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# task: (batch, lr, epochs) for RoBERTa-base LoRA, r=8 on Wq, Wv, max length 512. The paper starts MRPC, RTE
# and STS-B from the MNLI LoRA adapter: method.init_adapter=<mnli run>/adapter.
_BASE_LORA = {
    "mnli": (16, 5e-4, 30),
    "sst2": (16, 5e-4, 60),
    "mrpc": (16, 4e-4, 30),
    "cola": (32, 4e-4, 80),
    "qnli": (32, 4e-4, 25),
    "qqp": (16, 5e-4, 25),
    "rte": (32, 5e-4, 80),
    "stsb": (16, 4e-4, 40),
}
# task: (max length, batch, lr, epochs) for RoBERTa-large LoRA, r=8 on Wq, Wv, alpha 16.
_LARGE_LORA = {
    "mnli": (128, 4, 3e-4, 10),
    "sst2": (128, 4, 4e-4, 10),
    "mrpc": (512, 4, 3e-4, 20),
    "cola": (128, 4, 2e-4, 20),
    "qnli": (512, 4, 2e-4, 10),
    "qqp": (512, 4, 3e-4, 20),
    "rte": (512, 8, 4e-4, 20),
    "stsb": (512, 8, 2e-4, 30),
}
_GPUS_IN_REPO_SCRIPTS = {"cola": 2}  # every other task ran on 8 GPUs


def _lora(model_recipe: str, task: str, preset: str) -> GlueRecipe:
    if model_recipe == "roberta-large":
        length, batch, lr, epochs = _LARGE_LORA[task]
        recipe = GlueRecipe(lr, batch, epochs, length, 16.0)
        if preset == "repo" and task == "cola":
            recipe = replace(recipe, lr=3e-4, source="microsoft/LoRA examples/NLU roberta_large_cola.sh")
        return recipe
    batch, lr, epochs = _BASE_LORA[task]
    if preset == "repo":
        gpus = _GPUS_IN_REPO_SCRIPTS.get(task, 8)
        return GlueRecipe(lr, batch * gpus, epochs, 512, 16.0, "microsoft/LoRA examples/NLU scripts")
    return GlueRecipe(lr, batch, epochs, 512, 8.0)


# The tiny random-weight RoBERTa of the offline pipeline check (make glue-quick): a few epochs at rates
# that move a random model, not a recipe from any paper.
_QUICK_LR = {"lora": 1e-2, "full_ft": 1e-3, "bitfit": 1e-2}
MODEL_RECIPES = ("roberta-base", "roberta-large", "quick")


def glue_recipe(model_recipe: str, method: str, task: str, preset: str) -> GlueRecipe:
    """The defaults for one GLUE run.

    Raises:
        ValueError: unknown model recipe, method, task or preset (the message lists the choices).
    """
    if model_recipe not in MODEL_RECIPES:
        raise ValueError(f"model.recipe must be one of {', '.join(MODEL_RECIPES)}, got {model_recipe!r}")
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    if task not in _BASE_LORA:
        raise ValueError(f"no GLUE recipe for task {task!r}; tasks: {', '.join(_BASE_LORA)}")
    if model_recipe == "quick":
        if method not in _QUICK_LR:
            raise ValueError(f"unknown method {method!r}; choose lora, full_ft or bitfit")
        return GlueRecipe(_QUICK_LR[method], 16, 10, 64, 16.0, source="offline pipeline check (tiny random model)")
    lora = _lora(model_recipe, task, preset)
    large = model_recipe == "roberta-large"
    if method == "lora":
        return lora
    if method == "full_ft":
        return GlueRecipe(
            1e-5 if large else 2e-5,
            16,
            10,
            lora.max_seq_length,
            lora.lora_alpha,
            source="Liu et al. 2019 (RoBERTa) fine-tuning recipe; not run in the LoRA paper",
        )
    if method == "bitfit":
        return replace(
            lora,
            lr=5e-4,
            source="Ben Zaken et al. 2022 (BitFit) lr range; LoRA's batch and epochs",
        )
    raise ValueError(f"unknown method {method!r}; choose lora, full_ft or bitfit")


@dataclass(frozen=True)
class E2ERecipe:
    """GPT-2 on E2E NLG (paper Table 11 / examples/NLG): training and decoding defaults."""

    lr: float = 2e-4
    batch_size: int = 8
    epochs: int = 5
    max_seq_length: int = 512
    r: int = 4
    lora_alpha: float = 32.0
    lora_dropout: float = 0.1
    length_penalty: float = 0.9
    source: str = "Hu et al. 2021, Table 11"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


E2E_MODEL_RECIPES = ("gpt2-medium", "quick")


def e2e_recipe(model_recipe: str, method: str, preset: str) -> E2ERecipe:
    """The defaults for one E2E run; ``repo`` decodes with the README's length penalty 0.8.

    Full fine-tuning and BitFit are quoted from prior work in the paper; their rates here (5e-5, 5e-4)
    are the harness's choice, with LoRA's batch, epochs and schedule.
    """
    if model_recipe not in E2E_MODEL_RECIPES:
        raise ValueError(f"model.recipe must be one of {', '.join(E2E_MODEL_RECIPES)} for E2E, got {model_recipe!r}")
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    recipe = E2ERecipe()
    if preset == "repo":
        recipe = replace(recipe, length_penalty=0.8, source="microsoft/LoRA examples/NLG README")
    if model_recipe == "quick":
        recipe = replace(
            recipe,
            lr=5e-3,
            batch_size=8,
            epochs=6,
            max_seq_length=64,
            lora_alpha=8.0,
            lora_dropout=0.0,
            source="offline pipeline check (tiny random model)",
        )
    rates = {
        "lora": recipe.lr,
        "full_ft": 5e-5 if model_recipe != "quick" else 2e-3,
        "bitfit": 5e-4 if model_recipe != "quick" else 5e-3,
    }
    if method not in rates:
        raise ValueError(f"unknown method {method!r}; choose lora, full_ft or bitfit")
    return replace(recipe, lr=rates[method])


def _recipe_value(key: str, *, _root_: DictConfig) -> Any:
    """Resolver body: the recipe value ``key`` for the composed config's model, method, task, preset."""
    from experiments.methods import METHODS

    task = _root_.task
    family = task.get("family", "glue")
    name = _root_.method.name
    method = METHODS[name].recipe if name in METHODS else name  # a LoRA variant runs with LoRA's recipe
    if family == "e2e":
        recipe: GlueRecipe | E2ERecipe = e2e_recipe(_root_.model.recipe, method, _root_.preset.name)
    else:
        recipe = glue_recipe(_root_.model.recipe, method, task.name, _root_.preset.name)
    if not hasattr(recipe, key):
        raise ValueError(f"${{recipe:{key}}}: {family} recipes have no field {key!r}")
    return getattr(recipe, key)


def register_resolvers() -> None:
    """Make ``${recipe:<field>}`` available to configs (idempotent)."""
    if not OmegaConf.has_resolver("recipe"):
        OmegaConf.register_new_resolver("recipe", _recipe_value)
