"""Where a run lives, what its result file records, and how it is written.

A run's directory is a function of its configuration, so the same command finds its own checkpoint
after a kill; seeds of one configuration share a parent directory, which the report groups by.

Result and failure files are committed and compared across machines, so they hold no machine's paths:
files of a run are recorded relative to its run directory, the run directory relative to ``results_dir``,
and paths in the recorded config by :func:`portable_path` (``<results_dir>/...`` or ``<local>/<name>``).
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Mapping
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path, PurePath
from typing import Any

import torch

from experiments.atomic import write_json_atomic
from experiments.fingerprints import CODE_ROOT, code_fingerprint

__all__ = [
    "FAILURE_FILE",
    "NON_SEMANTIC_KEYS",
    "RESULT_FILE",
    "config_hash",
    "environment",
    "method_tag",
    "portable_config",
    "portable_path",
    "read_result",
    "write_failure",
    "write_result",
]

RESULT_FILE = "result.json"
FAILURE_FILE = "failure.json"
SCHEMA_VERSION = 1
# Settings (top-level or ``group.key``) that change where or how fast a run goes, or where its curves are
# mirrored, not what it computes: left out of the config hash (changing one neither reruns nor forks a run)
# and out of the report's configuration labels (experiments.reporting.runs).
NON_SEMANTIC_KEYS = frozenset(
    {
        *("results_dir", "overwrite", "device", "hydra", "seed", "logger"),
        *("train.compile", "train.checkpoint_every_steps", "train.per_device_batch_size", "train.eval_batch_size"),
        *("train.profile_steps", "train.profile_from_step"),
        *("data.dir", "data.cache_dir", "decode.batch_size"),
    }
)
LOCAL_MARKER = "<local>"
RESULTS_MARKER = "<results_dir>"


def config_hash(cfg: Mapping[str, Any]) -> str:
    """A short hash of the settings that determine a run's outcome (seed and paths excluded)."""
    semantic = {k: v for k, v in cfg.items() if k not in NON_SEMANTIC_KEYS}
    for group, values in semantic.items():
        if isinstance(values, Mapping):
            semantic[group] = {k: v for k, v in values.items() if f"{group}.{k}" not in NON_SEMANTIC_KEYS}
    text = json.dumps(semantic, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def method_tag(cfg: Mapping[str, Any]) -> str:
    """A readable directory name for the method and its key settings, made unique by the config hash."""
    from experiments.methods import get_method

    return f"{get_method(cfg['method']).tag()}_{cfg['preset']['name']}_{config_hash(cfg)}"


def _git_commit() -> str | None:
    """The commit of the checkout whose code runs (not of the working directory), ``+dirty`` with tracked edits."""

    def git(*args: str) -> str:
        command = ["git", "-C", str(CODE_ROOT), *args]
        return subprocess.run(command, capture_output=True, text=True, check=True, timeout=5).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}{'+dirty' if dirty else ''}"


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def environment(device: torch.device) -> dict[str, Any]:
    """Software and hardware a run used, so numbers can be traced and compared like with like."""
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return {
        "device": str(device),
        "gpu": gpu,
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "versions": {
            name: _version(name) for name in ("lora-harness", "torch", "transformers", "peft", "hydra-core", "datasets")
        },
        "cuda": torch.version.cuda,
        "git_commit": _git_commit(),
        "code": code_fingerprint(),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def portable_path(value: str, results_dir: str | Path | None = None) -> str:
    """A path as a result file records it: ``<results_dir>/<relative>`` for one below ``results_dir``,
    ``<local>/<name>`` for any other absolute or ``~`` path; relative paths and hub names as given."""
    if not value.startswith("~") and not PurePath(value).is_absolute():
        return value
    path = Path(value).expanduser().resolve()
    if results_dir is not None:
        root = Path(results_dir).expanduser().resolve()
        if path != root and path.is_relative_to(root):
            return f"{RESULTS_MARKER}/{path.relative_to(root).as_posix()}"
    return f"{LOCAL_MARKER}/{path.name}"


def portable_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The config as recorded: every path string made portable (see :func:`portable_path`)."""
    results_dir = cfg.get("results_dir")

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return portable_path(value, results_dir)
        if isinstance(value, Mapping):
            return {key: walk(inner) for key, inner in value.items()}
        if isinstance(value, list | tuple):
            return [walk(inner) for inner in value]
        return value

    return walk(dict(cfg))


def _scrub(text: str) -> str:
    """Free text (errors, tracebacks) with this machine's working, home, Python and temp folders masked."""
    prefixes = {
        str(Path.cwd()): ".",
        str(Path.home()): "~",
        sys.prefix: "<python>",
        sys.base_prefix: "<python>",
        tempfile.gettempdir(): "<tmp>",
    }
    for prefix in sorted(prefixes, key=len, reverse=True):
        if len(prefix) > 1:
            text = text.replace(prefix + "/", prefixes[prefix] + "/")
    return text


def write_result(run_dir: Path, result: dict[str, Any]) -> Path:
    """Write ``result.json`` atomically into the run directory."""
    path = write_json_atomic(Path(run_dir) / RESULT_FILE, {"schema_version": SCHEMA_VERSION, **result})
    (Path(run_dir) / FAILURE_FILE).unlink(missing_ok=True)
    return path


def write_failure(directory: Path, identity: dict[str, Any], error: BaseException) -> Path:
    """Record a failed run (for sweeps, whose other jobs go on) with its error and traceback."""
    return write_json_atomic(
        Path(directory) / FAILURE_FILE,
        {
            "schema_version": SCHEMA_VERSION,
            "status": "failed",
            **identity,
            "error": _scrub(f"{type(error).__name__}: {error}"),
            "traceback": _scrub("".join(traceback.format_exception(error))),
            "failed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
    )


def read_result(run_dir: Path) -> dict[str, Any] | None:
    """The finished result of a run directory, or None."""
    path = Path(run_dir) / RESULT_FILE
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if data.get("status") == "completed" else None
