"""Typed schemas for every config group, checked before anything is loaded.

Each group is a dataclass: OmegaConf merges the composed config into it, so an unknown key (including the
``+key=value`` form, which Hydra adds without a check) or a value of the wrong type fails with the key's full
name, and ``__post_init__`` checks ranges and choices. :func:`validate_config` turns every such failure into
one :class:`ConfigError` line that names the key, the value, what is allowed and the fix, with a "did you
mean" for near-miss keys. The schemas are also registered in Hydra's ConfigStore (``schema/<family>``), so
tools can compose against them.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from experiments.suggest import closest, unknown_setting
from experiments.tracking import TRACKERS

# Where runs land unless results_dir says otherwise (git-ignored; committed reference runs live in results/).
RUNS_DIR = "runs"

__all__ = [
    "RUNS_DIR",
    "ConfigError",
    "E2ERunConfig",
    "GlueRunConfig",
    "LoggerConfig",
    "method_schemas",
    "validate_config",
]

COMPILE_MODES = ("auto", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


class ConfigError(ValueError):
    """A config value is unknown, of the wrong type or out of range (the message names key and fix)."""


def _fail(key: str, value: Any, allowed: str, fix: str | None = None) -> None:
    fix = fix or f"set {key} within that range, or drop the override to use the default"
    raise ConfigError(f"{key}={value!r} is not allowed (allowed: {allowed}); {fix}")


def _at_least(
    key: str, value: Any, low: float, optional: bool = False, integer: bool = True, fix: str | None = None
) -> None:
    if value is None and optional:
        return
    allowed = f"{'an integer' if integer else 'a number'} >= {low:g}" + (" or null" if optional else "")
    if value is None or isinstance(value, bool) or (isinstance(value, float) and not math.isfinite(value)):
        _fail(key, value, allowed, fix)
    if value < low:
        _fail(key, value, allowed, fix)


def _in_range(key: str, value: float, low: float, high: float, high_open: bool = True) -> None:
    ok = math.isfinite(value) and low <= value and (value < high if high_open else value <= high)
    if not ok:
        _fail(key, value, f"a number in [{low:g}, {high:g}{')' if high_open else ']'}")


def _choice(key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        near = closest(str(value), choices)
        hint = f"did you mean {key}={near}?" if near else f"pick one of those for {key}"
        _fail(key, value, f"one of {', '.join(choices)}", hint)


# -- groups -----------------------------------------------------------------------------------------------


@dataclass
class ModelConfig:
    """Which pretrained model, and what of it is a task head (trained by every method, not counted)."""

    name: str = MISSING
    name_or_path: str = MISSING
    recipe: str = MISSING
    head_modules: list[str] = field(default_factory=list)
    train_pooler: bool = False
    dtype: str = "float32"
    attn_implementation: str | None = None
    gguf_file: str | None = None

    def __post_init__(self) -> None:
        _choice("model.dtype", self.dtype, ("float32", "bfloat16", "float16"))


@dataclass
class TsvLayoutConfig:
    text_columns: list[str] = MISSING
    label_column: str = MISSING
    has_header: bool = True


@dataclass
class GlueTaskConfig:
    """A GLUE task's facts (conf/task/<name>.yaml)."""

    name: str = MISSING
    family: str = "glue"
    tsv_dir: str = MISSING
    hub_config: str = MISSING
    hub_text_fields: list[str] = MISSING
    labels: list[str] = field(default_factory=list)
    score_range: list[float] | None = None
    metrics: list[str] = MISSING
    main_metric: str = MISSING
    tsv: TsvLayoutConfig = field(default_factory=TsvLayoutConfig)
    eval_splits: dict[str, str] = MISSING
    hub_eval_splits: dict[str, str] = MISSING


@dataclass
class E2ETaskConfig:
    """E2E NLG's facts (conf/task/e2e.yaml)."""

    name: str = "e2e"
    family: str = "e2e"
    files: dict[str, str] = MISSING
    csv_files: dict[str, str] = MISSING
    hub_splits: dict[str, str] = MISSING
    hub_fields: dict[str, str] = MISSING
    main_metric: str = "BLEU"
    prompt_separator: str = " ||"


@dataclass
class FullFTConfig:
    """Full fine-tuning: every parameter trains."""

    name: str = "full_ft"


@dataclass
class BitFitConfig:
    """BitFit: biases and the head train."""

    name: str = "bitfit"


@dataclass
class LoRAMethodConfig:
    """LoRA on the target matrices (paper names or module names)."""

    name: str = "lora"
    r: int = 8
    lora_alpha: float = 8.0
    lora_dropout: float = 0.0
    targets: list[str] = field(default_factory=lambda: ["Wq", "Wv"])
    use_rslora: bool = False
    bias: str = "none"
    init_adapter: str | None = None

    def __post_init__(self) -> None:
        _at_least("method.r", self.r, 1)
        if not (math.isfinite(self.lora_alpha) and self.lora_alpha > 0):
            _fail("method.lora_alpha", self.lora_alpha, "a number > 0", "e.g. method.lora_alpha=16")
        _in_range("method.lora_dropout", self.lora_dropout, 0.0, 1.0)
        if not self.targets:
            _fail("method.targets", self.targets, "a non-empty list", "e.g. method.targets=[Wq,Wv]")
        _choice("method.bias", self.bias, ("none", "all", "lora_only"))


@dataclass
class LoRAPlusMethodConfig(LoRAMethodConfig):
    """LoRA+ adds the learning-rate ratio of B over A."""

    loraplus_lr_ratio: float = 16.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (math.isfinite(self.loraplus_lr_ratio) and self.loraplus_lr_ratio > 0):
            _fail("method.loraplus_lr_ratio", self.loraplus_lr_ratio, "a number > 0", "e.g. 16 (the LoRA+ paper's)")


def method_schemas() -> dict[str, type]:
    """Each registered method's config schema (``experiments.methods`` says which)."""
    from experiments.methods import METHODS

    return {name: method.schema for name, method in METHODS.items()}


@dataclass
class TrainConfig:
    """Optimisation; ``batch_size`` is the global batch."""

    lr: float = MISSING
    epochs: int = MISSING
    batch_size: int = MISSING
    per_device_batch_size: int | None = None
    eval_batch_size: int = 64
    max_seq_length: int = MISSING
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    warmup_steps: int | None = None
    max_grad_norm: float | None = None
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    precision: str = "auto"
    frozen_weights_in_compute_dtype: bool = True
    compile: Any = "auto"
    max_steps: int | None = None
    log_every_steps: int = 10
    checkpoint_every_steps: int = 500
    profile_steps: int = 0  # a profiler trace of this many steps into <run_dir>/profile/ (experiments.step_profile)
    profile_from_step: int = 20  # after this many steps: the cold start stays out of the trace

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lr) and self.lr > 0):
            _fail("train.lr", self.lr, "a number > 0", "e.g. train.lr=5e-4")
        _at_least("train.epochs", self.epochs, 1)
        _at_least("train.batch_size", self.batch_size, 1)
        _at_least("train.per_device_batch_size", self.per_device_batch_size, 1, optional=True)
        _at_least("train.eval_batch_size", self.eval_batch_size, 1)
        _at_least("train.max_seq_length", self.max_seq_length, 8)  # room for special tokens and some text
        _at_least("train.weight_decay", self.weight_decay, 0.0, integer=False)
        _in_range("train.warmup_ratio", self.warmup_ratio, 0.0, 1.0)
        _at_least("train.warmup_steps", self.warmup_steps, 0, optional=True)
        if self.max_grad_norm is not None and not (math.isfinite(self.max_grad_norm) and self.max_grad_norm > 0):
            _fail("train.max_grad_norm", self.max_grad_norm, "a number > 0, or null for no clipping")
        _in_range("train.adam_beta1", self.adam_beta1, 0.0, 1.0)
        _in_range("train.adam_beta2", self.adam_beta2, 0.0, 1.0)
        if not (math.isfinite(self.adam_eps) and self.adam_eps > 0):
            _fail("train.adam_eps", self.adam_eps, "a number > 0")
        _choice("train.precision", self.precision, ("auto", "fp32", "bf16", "fp16"))
        if not isinstance(self.compile, bool):
            _choice("train.compile", self.compile, COMPILE_MODES)
        _at_least("train.max_steps", self.max_steps, 1, optional=True)
        _at_least("train.log_every_steps", self.log_every_steps, 1)
        _at_least("train.checkpoint_every_steps", self.checkpoint_every_steps, 0)
        _at_least("train.profile_steps", self.profile_steps, 0)
        _at_least("train.profile_from_step", self.profile_from_step, 0)


@dataclass
class E2ETrainConfig(TrainConfig):
    """E2E adds label smoothing on the text tokens."""

    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _in_range("train.label_smoothing", self.label_smoothing, 0.0, 1.0)


@dataclass
class PresetConfig:
    """Where the paper and the authors' scripts differ: which one a run follows."""

    name: str = "paper"

    def __post_init__(self) -> None:
        _choice("preset.name", self.name, ("paper", "repo"))


def _check_limits(prefix: str, **limits: int | None) -> None:
    for key, value in limits.items():
        _at_least(f"{prefix}.{key}", value, 1, optional=True)


def _check_cache_dir(value: str | None) -> None:
    """The tokenization cache must be a folder (made if missing); a file there would fail only after loading."""
    if value is not None and (not value.strip() or Path(value).expanduser().is_file()):
        _fail(
            "data.cache_dir",
            value,
            "a folder, created if missing, or null for the datasets cache (HF_DATASETS_CACHE)",
            "point data.cache_dir at a folder, or drop the override",
        )


@dataclass
class GlueDataConfig:
    dir: str | None = None
    hub_dataset: str = "nyu-mll/glue"
    skip_malformed: bool = False
    max_train_examples: int | None = None
    max_eval_examples: int | None = None
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        _check_limits("data", max_train_examples=self.max_train_examples, max_eval_examples=self.max_eval_examples)
        _check_cache_dir(self.cache_dir)


@dataclass
class E2EDataConfig:
    dir: str | None = None
    format: str = "auto"
    hub_dataset: str = "GEM/e2e_nlg"
    max_train_examples: int | None = None
    max_valid_examples: int | None = None
    max_eval_mrs: int | None = None
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        _choice("data.format", self.format, ("auto", "lora_txt", "csv"))
        _check_cache_dir(self.cache_dir)
        _check_limits("data", max_train_examples=self.max_train_examples, max_valid_examples=self.max_valid_examples)
        # One MR's several references cannot be written in the official scorer's layout (no blank line at all
        # reads as one reference per MR), so the smallest test subset that can be scored is two MRs.
        _at_least(
            "data.max_eval_mrs",
            self.max_eval_mrs,
            2,
            optional=True,
            fix="set data.max_eval_mrs=2 or more (one MR's references cannot be scored alone), or null for all",
        )


@dataclass
class DecodeConfig:
    """Beam search for E2E (the paper's: 10 beams, length penalty 0.9, no repeated 4-gram, 64 tokens)."""

    num_beams: int = 10
    length_penalty: float = 0.9
    no_repeat_ngram_size: int = 4
    max_new_tokens: int = 64
    batch_size: int = 16

    def __post_init__(self) -> None:
        _at_least("decode.num_beams", self.num_beams, 1)
        if not math.isfinite(self.length_penalty):
            _fail("decode.length_penalty", self.length_penalty, "a finite number")
        _at_least("decode.no_repeat_ngram_size", self.no_repeat_ngram_size, 0)
        _at_least("decode.max_new_tokens", self.max_new_tokens, 1)
        _at_least("decode.batch_size", self.batch_size, 1)


@dataclass
class LoggerConfig:
    """Which tool receives the training curves (conf/logger/<name>.yaml); it does not shape results."""

    name: str = "tensorboard"
    project: str = "lora-harness"  # the MLflow experiment / W&B project
    mode: str = "offline"  # W&B: offline (upload later with `wandb sync`) or online

    def __post_init__(self) -> None:
        _choice("logger.name", self.name, tuple(TRACKERS))
        _choice("logger.mode", self.mode, ("offline", "online"))


def _check_run(seed: int, device: str) -> None:
    _at_least("seed", seed, 0)
    if not (device in ("auto", "cpu", "cuda") or (device.startswith("cuda:") and device[5:].isdigit())):
        _fail("device", device, "auto, cpu, cuda or cuda:<index>", "e.g. device=cpu")


@dataclass
class _RunConfig:
    """What every run has besides its family's groups (task, train, data, ...)."""

    model: ModelConfig = MISSING
    method: Any = MISSING
    preset: PresetConfig = field(default_factory=PresetConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    seed: int = 0
    device: str = "auto"
    results_dir: str = RUNS_DIR
    overwrite: bool = False

    def __post_init__(self) -> None:
        _check_run(self.seed, self.device)


@dataclass
class GlueRunConfig(_RunConfig):
    """One GLUE run (conf/glue.yaml with its groups)."""

    task: GlueTaskConfig = MISSING
    train: TrainConfig = MISSING
    data: GlueDataConfig = field(default_factory=GlueDataConfig)


@dataclass
class E2ERunConfig(_RunConfig):
    """One E2E run (conf/e2e.yaml with its groups); seed 110 is the paper's."""

    task: E2ETaskConfig = MISSING
    train: E2ETrainConfig = MISSING
    data: E2EDataConfig = field(default_factory=E2EDataConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    seed: int = 110


RUN_SCHEMAS: dict[str, type] = {"glue": GlueRunConfig, "e2e": E2ERunConfig}


def _register() -> None:
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for family, schema in RUN_SCHEMAS.items():
        store.store(group="schema", name=family, node=schema)
    for name, schema in {"lora": LoRAMethodConfig, "full_ft": FullFTConfig, "bitfit": BitFitConfig}.items():
        store.store(group="schema/method", name=name, node=schema)


_register()


# -- validation -------------------------------------------------------------------------------------------


def _keys_at(schema: type, method_schema: type, path: list[str]) -> list[str]:
    """The setting names at ``path`` of the run schema (``method`` being the chosen method's schema)."""
    current: Any = schema
    for depth, part in enumerate(path):
        hints = typing.get_type_hints(current) if is_dataclass(current) else {}
        current = method_schema if depth == 0 and part == "method" else hints.get(part)
    return [f.name for f in fields(current)] if is_dataclass(current) else []


def _explain(error: OmegaConfBaseException, schema: type, method_schema: type) -> ConfigError:
    key = str(getattr(error, "full_key", "") or "")
    if isinstance(error, ConfigKeyError):
        parent, _, leaf = key.rpartition(".")
        options = _keys_at(schema, method_schema, parent.split(".") if parent else [])
        near = closest(leaf, options)
        return ConfigError(unknown_setting(key, f"{parent + '.' if parent else ''}{near}" if near else None, options))
    if isinstance(error, ValidationError):
        value = getattr(error, "value", None)
        expected = str(getattr(error, "msg", error)).split("\n")[0]
        return ConfigError(f"{key}={value!r} has the wrong type ({expected}); give a value of the key's type")
    return ConfigError(str(error).split("\n")[0])


def validate_config(cfg: DictConfig | Mapping[str, Any], family: str) -> Any:
    """The typed run config of ``cfg`` (a :class:`GlueRunConfig` or :class:`E2ERunConfig`).

    Raises:
        ConfigError: an unknown key, a wrong type or a value out of range, with the key, the value, what
            is allowed and the fix.
    """
    from experiments.runner import plain_config

    if family not in RUN_SCHEMAS:
        raise ConfigError(f"unknown run family {family!r}; expected one of {', '.join(RUN_SCHEMAS)}")
    try:
        plain = plain_config(cfg)
    except OmegaConfBaseException as error:
        raise ConfigError(f"the config cannot be resolved: {str(error).splitlines()[0]}") from error
    name = (plain.get("method") or {}).get("name")
    schemas = method_schemas()
    if name not in schemas:
        _choice("method", name, tuple(schemas))
    schema, method_schema = RUN_SCHEMAS[family], schemas[name]
    structured = OmegaConf.structured(schema)
    structured.method = OmegaConf.structured(method_schema)
    try:
        merged = OmegaConf.merge(structured, plain)
        return OmegaConf.to_object(merged)
    except ConfigError:
        raise
    except OmegaConfBaseException as error:
        raise _explain(error, schema, method_schema) from error
