"""Every run on disk as one DataFrame row: finished (``result.json``), failed (``failure.json``) or incomplete
(a run directory with neither: still running, or killed).

Runs that differ only in seed share a ``variant_key``; any other difference in the resolved config (method,
rank, alpha, targets, preset, learning rate, data limits, ...) gives another key, so the report never pools
different configurations. Settings that the recipe chooses per task (lr, batch, epochs, sequence length) enter
the key only where a run overrode them, so one method's row can span tasks. Which pretrained weights or adapter
a run started from (``init_from``) is kept beside the key, not in it: the paper starts MRPC, RTE and STS-B from
the MNLI adapter within one table row.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from experiments.methods import display, get_method, rank_stabilised
from experiments.paper_numbers import GLUE_TASKS
from experiments.results import FAILURE_FILE, NON_SEMANTIC_KEYS, RESULT_FILE

__all__ = ["COLUMNS", "E2E_SCALES", "config_settings", "find_run_files", "load_runs", "run_record"]

# Display units, the paper's: GLUE metrics x100; E2E BLEU/METEOR/ROUGE-L x100, NIST and CIDEr as computed.
GLUE_SCALE = 100.0
E2E_SCALES = {"BLEU": 100.0, "NIST": 1.0, "METEOR": 100.0, "ROUGE_L": 100.0, "CIDEr": 1.0}

COLUMNS = [
    "status",  # completed | failed | incomplete | unreadable
    "family",
    "model",
    "model_source",
    "model_recipe",
    "task",
    "method",
    "preset",
    "seed",
    "r",
    "lora_alpha",
    "use_rslora",
    "targets",
    "recipe_r",
    "recipe_alpha",
    "init_from",
    "variant",
    "variant_key",
    "rank_series",  # the configuration with r left out: a line of the rank table and plot
    "rank_series_key",
    "alpha_series",  # with r, lora_alpha and use_rslora left out: a block of the alpha table
    "alpha_series_key",
    "target_series",  # with r, targets and train.epochs left out: a block of the target-matrix table
    "target_series_key",
    "budget_series",  # with train.epochs left out: a row of the Table 2 layout, whose tasks have their own budget
    "budget_series_key",
    "main_metric",
    "score",
    *E2E_SCALES,
    "trainable_params",
    "trainable_params_with_head",
    "total_params",
    "epochs",  # the training budget: train.epochs as configured
    "steps",  # optimizer steps the run took
    "best_epoch",  # the epoch whose dev score is the run's score (GLUE)
    "recipe_epochs",  # the paper recipe's epochs for this method and task, for reference
    "scoring_pending",  # finished training, test scores not computed yet (E2E without Java)
    "error",
    "path",
]

# Config keys that say where or how fast a run went (the config hash's NON_SEMANTIC_KEYS), or that the report
# keys on separately.
_HANDLED = {key for key in NON_SEMANTIC_KEYS if "." not in key} | {"task", "model", "method", "preset", "train"}
_RECIPE_TRAIN_KEYS = {"lr": "lr", "batch_size": "batch_size", "epochs": "epochs", "max_seq_length": "max_seq_length"}
_SPEED_ONLY = {key for key in NON_SEMANTIC_KEYS if "." in key}
_METHOD_KEYS = {"name", "r", "lora_alpha", "lora_dropout", "targets", "use_rslora", "bias", "init_adapter"}
# Method settings with a column of their own (the rank, alpha and target tables read them).
_SHARED_METHOD_COLUMNS = ("r", "lora_alpha", "use_rslora", "targets")
_SEED_DIR = re.compile(r"seed-?\d+")


def find_run_files(
    directories: Iterable[str | Path], include_quick: bool = False, keep: Callable[[Path], bool] | None = None
) -> list[Path]:
    """Result and failure files (and incomplete run directories) under ``directories`` that ``keep`` accepts.

    Skipped, unless ``include_quick``: anything in a ``quick`` folder below a given directory (``make
    glue-quick`` output).
    """
    found: list[Path] = []
    for directory in directories:
        root = Path(directory)
        if root.is_file():
            found.append(root)
            continue
        for path in sorted(root.rglob("*")):
            relative = path.relative_to(root).parts
            if not include_quick and "quick" in relative[:-1]:
                continue
            result = path.name == RESULT_FILE and path.is_file()
            failure = path.name == FAILURE_FILE and path.is_file()
            if (result or failure or (path.is_dir() and _is_incomplete_run_dir(path))) and (keep is None or keep(path)):
                found.append(path)
    return found


def _is_incomplete_run_dir(path: Path) -> bool:
    """A ``<family>/<model>/<task>/<tag>/seed<N>`` directory the runner took, holding neither result nor failure.

    Hydra makes the directory (its job folder) before the runner starts, so one holding only Hydra's own
    files (``.hydra/``, ``<job>.log``) is a run refused at the start, not one that is running or was killed.
    """
    if not _SEED_DIR.fullmatch(path.name) or len(path.parts) < 5 or path.parts[-5] not in ("glue", "e2e"):
        return False
    if (path / RESULT_FILE).is_file() or (path / FAILURE_FILE).is_file():
        return False
    return any(child.name != ".hydra" and child.suffix != ".log" for child in path.iterdir())


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), inner, out)
    else:
        out[prefix] = json.dumps(value, sort_keys=True) if isinstance(value, list) else value


def _init_from(init_adapter: Any) -> str:
    if not init_adapter:
        return "pretrained"
    parts = Path(str(init_adapter)).parts
    task = next((p for p in parts if p in GLUE_TASKS), None)
    return f"{task} adapter" if task else "adapter"


def _recipe(record: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any] | None:
    """The recipe a run was composed from: recorded in results; recomputed for failures."""
    if record.get("recipe"):
        return dict(record["recipe"])
    from experiments.recipes import e2e_recipe, glue_recipe

    try:
        model, method, preset = config["model"]["recipe"], config["method"]["name"], config["preset"]["name"]
        if config["task"].get("family") == "e2e":
            return e2e_recipe(model, method, preset).as_dict()
        return glue_recipe(model, method, config["task"]["name"], preset).as_dict()
    except (KeyError, ValueError):
        return None


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=0.0)
    return a == b


def config_settings(config: Mapping[str, Any], recipe: Mapping[str, Any] | None) -> dict[str, Any]:
    """What distinguishes a configuration, seed and paths aside: method settings, overrides of the recipe's
    per-task values, and every other semantic config key (flattened)."""
    method = config["method"]
    own = _method_settings(method)  # what the method says tells its configurations apart
    settings: dict[str, Any] = {
        "method": method["name"],
        "preset": config["preset"]["name"],
        **{key: own.pop(key, None) for key in _SHARED_METHOD_COLUMNS},
    }
    optional: dict[str, Any] = dict(own)
    if settings["r"] is not None:
        optional["lora_dropout"] = method.get("lora_dropout")
        optional["bias"] = method.get("bias", "none")
    for key, value in method.items():
        if key not in _METHOD_KEYS and key not in optional:
            optional[f"method.{key}"] = value
    train = config.get("train", {})
    for key, recipe_key in _RECIPE_TRAIN_KEYS.items():
        value = train.get(key)
        if recipe is None or recipe_key not in recipe or not _same(value, recipe[recipe_key]):
            optional[f"train.{key}"] = value
    flat: dict[str, Any] = {}
    _flatten("", {k: v for k, v in config.items() if k not in _HANDLED}, flat)
    _flatten("train", {k: v for k, v in train.items() if k not in _RECIPE_TRAIN_KEYS}, flat)
    flat["model.dtype"] = config["model"].get("dtype")
    flat["model.recipe"] = config["model"].get("recipe")
    optional.update({k: v for k, v in flat.items() if k not in _SPEED_ONLY})
    settings["optional"] = optional
    return settings


def _method_settings(method: Mapping[str, Any]) -> dict[str, Any]:
    try:
        return get_method(method).settings()
    except (KeyError, ValueError):  # a method this code no longer knows: its raw config speaks for it
        return {}


def _base_record(path: Path) -> dict[str, Any]:
    return {column: None for column in COLUMNS} | {"path": str(path)}


def run_record(path: Path) -> dict[str, Any]:
    """One row from a result file, a failure file or an incomplete run directory (settings unresolved)."""
    row = _base_record(path)
    if path.is_dir():
        family, model, task = path.parts[-5], path.parts[-4], path.parts[-3]
        seed = int(path.name.replace("seed", ""))
        return row | {"status": "incomplete", "family": family, "model": model, "task": task, "seed": seed}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        return row | {"status": "unreadable", "error": f"{type(error).__name__}: {error}"}
    config = data.get("config")
    row |= {
        "status": "completed" if data.get("status") == "completed" else "failed",
        "family": data.get("family") or (config or {}).get("task", {}).get("family"),
        "model": data.get("model"),
        "task": data.get("task"),
        "method": data.get("method"),
        "seed": data.get("seed"),
        "error": data.get("error"),
        "model_source": data.get("model_source"),
    }
    if row["status"] == "completed":
        row |= _scores(data)
        for key in ("trainable_params", "trainable_params_with_head", "total_params", "steps"):
            row[key] = data.get(key)
        row["best_epoch"] = (data.get("metrics") or {}).get("best_epoch") if data.get("family") != "e2e" else None
        row["scoring_pending"] = bool(data.get("scoring_pending"))
    if config:
        recipe = _recipe(data, config)
        row["model_source"] = row["model_source"] or config["model"].get("name_or_path")
        row["model_recipe"] = config["model"].get("recipe")
        row["init_from"] = _init_from(config["method"].get("init_adapter"))
        row["epochs"] = config.get("train", {}).get("epochs")
        if recipe:
            row["recipe_r"], row["recipe_alpha"] = recipe.get("r"), recipe.get("lora_alpha")
            row["recipe_epochs"] = recipe.get("epochs")
        row["_settings"] = config_settings(config, recipe)
    return row


def _scores(data: Mapping[str, Any]) -> dict[str, Any]:
    main, value = data.get("main_metric"), data.get("main_metric_value")
    out: dict[str, Any] = {"main_metric": main}
    if data.get("family") == "e2e":
        scores = data.get("metrics", {}).get("test") or {}
        for name, scale in E2E_SCALES.items():
            out[name] = scores[name] * scale if isinstance(scores.get(name), (int, float)) else None
        out["score"] = out.get(main) if main in E2E_SCALES else None
    else:
        out["score"] = value * GLUE_SCALE if isinstance(value, (int, float)) else None
    return out


# What each family of series leaves out of a configuration (the settings its table or plot varies).
_SERIES = {
    "variant": (),
    "rank_series": ("r",),
    "alpha_series": ("r", "lora_alpha", "use_rslora"),
    "target_series": ("r", "targets", "train.epochs"),  # a column per task, each at its own budget
    "budget_series": ("train.epochs",),  # an optional key: leaving it out of a label names no epochs there
}


def _label(settings: Mapping[str, Any], shown: Sequence[str], omit: Sequence[str] = ()) -> str:
    method = settings["method"]
    parts = [display(method).label]
    if settings["r"] is not None:
        lora = [
            f"r={settings['r']}" if "r" not in omit else "",
            f"α={settings['lora_alpha']:g}" if "lora_alpha" not in omit else "",
            settings["targets"] if "targets" not in omit else "",
            "rsLoRA" if settings["use_rslora"] and not rank_stabilised(method) and "use_rslora" not in omit else "",
        ]
        parts.extend(part for part in lora if part)
    optional = settings["optional"]
    extras = [f"{key}={_short(optional[key])}" for key in shown if key in optional and key not in omit]
    return f"{' '.join(parts)}, preset {settings['preset']}" + (f"; {', '.join(extras)}" if extras else "")


def _short(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _varying_keys(settings: Sequence[Mapping[str, Any]]) -> list[str]:
    """Optional keys whose value is not the same for every run that has them (or that some runs lack)."""
    keys = sorted({k for s in settings for k in s["optional"]})
    varying = []
    for key in keys:
        values = {json.dumps(s["optional"].get(key, "<absent>"), sort_keys=True, default=str) for s in settings}
        if len(values) > 1:
            varying.append(key)
    return varying


_RECIPE_OVERRIDES = {f"train.{key}" for key in _RECIPE_TRAIN_KEYS}


def _departures(settings: Sequence[Mapping[str, Any]]) -> set[str]:
    """Keys in which runs leave the recipe (an overridden lr, batch, epochs or length) or subsample the data."""
    keys = set()
    for setting in settings:
        for key, value in setting["optional"].items():
            if key in _RECIPE_OVERRIDES or (key.startswith("data.max_") and value is not None):
                keys.add(key)
    return keys


def load_runs(
    directories: Iterable[str | Path], include_quick: bool = False, keep: Callable[[Path], bool] | None = None
) -> pd.DataFrame:
    """All runs under ``directories`` (that ``keep`` accepts) as a DataFrame with :data:`COLUMNS`, any status."""
    rows = [run_record(path) for path in find_run_files(directories, include_quick, keep)]
    for family in {row["family"] for row in rows if row.get("_settings")}:
        members = [row for row in rows if row.get("_settings") and row["family"] == family]
        lora_members = [row["_settings"] for row in members if row["_settings"]["r"] is not None]
        shown = _varying_keys([row["_settings"] for row in members])
        # LoRA-only keys vary only among LoRA runs; absent for other methods is not a difference.
        lora_only = {"lora_dropout", "bias"}
        shown = [k for k in shown if k not in lora_only] + [k for k in _varying_keys(lora_members) if k in lora_only]
        # Departures from the paper's setting are named even when every run shares them.
        shown += sorted(_departures([row["_settings"] for row in members]) - set(shown))
        for row in members:
            settings = row["_settings"]
            row.update({k: settings[k] for k in ("method", "preset", "r", "lora_alpha", "use_rslora", "targets")})
            for column, omit in _SERIES.items():
                kept = {k: v for k, v in settings.items() if k not in omit}
                kept["optional"] = {k: v for k, v in settings["optional"].items() if k not in omit}
                row[column] = _label(settings, shown, omit)
                row[f"{column}_key"] = json.dumps(kept, sort_keys=True, default=str)
    _adopt_siblings(rows)
    frame = pd.DataFrame([{k: row.get(k) for k in COLUMNS} for row in rows], columns=COLUMNS)
    return frame.astype({"seed": "Int64", "r": "Int64"}) if len(frame) else frame


def _adopt_siblings(rows: list[dict[str, Any]]) -> None:
    """Give an incomplete run the settings of another seed in the same configuration directory."""
    by_parent: dict[Path, dict[str, Any]] = {}
    for row in rows:
        if row.get("variant_key"):
            by_parent.setdefault(Path(row["path"]).parent.parent, row)
    for row in rows:
        if row["status"] == "incomplete":
            sibling = by_parent.get(Path(row["path"]).parent)
            if sibling:
                for key in COLUMNS:
                    if key not in ("status", "seed", "path", "error") and row.get(key) is None:
                        row[key] = sibling.get(key)
                for key in ("score", *E2E_SCALES, "main_metric", "steps", "best_epoch", "scoring_pending"):
                    row[key] = None
