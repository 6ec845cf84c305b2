"""Content fingerprints: a result names the exact weights and tokenizer it came from without naming a machine's path."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

__all__ = ["CODE_ROOT", "code_fingerprint", "model_fingerprint", "sha256_file", "tokenizer_fingerprint"]

# What determines a model's outputs; tokenizer files and READMEs do not change the weights.
_MODEL_FILES = ("*.safetensors", "*.bin", "*.pt", "*.gguf", "config.json")
_CHUNK = 1 << 20
# The checkout (or installed tree) whose code runs: the folder holding the lora and experiments packages.
CODE_ROOT = Path(__file__).resolve().parent.parent
# What decides what a run computes: the library, the runners and the configs they compose.
_CODE_FILES = ("lora/**/*.py", "experiments/**/*.py", "conf/**/*.yaml")


def sha256_file(path: str | Path) -> str:
    """The hex sha256 of a file's bytes, read in chunks (weights can be gigabytes)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def code_fingerprint(root: Path = CODE_ROOT) -> str:
    """``sha256:<hex>`` over the harness's code and configs (relative names and bytes, sorted).

    A result records it beside the git commit, which cannot tell which edits a ``+dirty`` tree held, nor see code
    that was copied without its repository: hashing a commit's checkout the same way says whether it made the run.
    """
    digest = hashlib.sha256()
    files = sorted({p for pattern in _CODE_FILES for p in root.glob(pattern) if p.is_file()})
    for path in files:
        digest.update(f"{path.relative_to(root).as_posix()}\0{sha256_file(path)}\n".encode())
    return f"sha256:{digest.hexdigest()}"


def model_fingerprint(name_or_path: str) -> str | None:
    """``sha256:<hex>`` over a local model folder's weight and config files (names and bytes, sorted).

    None for a hub name that is not a local folder: the name (and the hub's revision) identifies it.
    """
    folder = Path(name_or_path).expanduser()
    if not folder.is_dir():
        return None
    files = sorted({p for pattern in _MODEL_FILES for p in folder.glob(pattern) if p.is_file()})
    if not files:
        return None
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.name}\0{sha256_file(path)}\n".encode())
    return f"sha256:{digest.hexdigest()}"


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """``sha256:<hex>`` over what decides a tokenizer's ids, not the folder it was loaded from.

    A fast tokenizer's whole pipeline (normaliser, pre-tokeniser, model with vocabulary and merges, post-processor,
    added tokens); a Python one's vocabulary and the bytes of its vocabulary files (e.g. a sentencepiece model).
    Then the special tokens' roles and ids, which the encoders read (bos, eos, pad), and the truncation side.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        pipeline = json.loads(backend.to_str())
        for per_call in ("truncation", "padding"):  # set by every call from its own arguments
            pipeline.pop(per_call, None)
    else:
        files = {name: tokenizer.init_kwargs.get(name) for name in tokenizer.vocab_files_names}
        pipeline = {
            "vocab": sorted(tokenizer.get_vocab().items()),
            "files": {name: sha256_file(path) for name, path in files.items() if path and Path(path).is_file()},
        }
    roles = tokenizer.special_tokens_map
    special = {role: [token, tokenizer.convert_tokens_to_ids(token)] for role, token in roles.items()}
    described = {
        "class": type(tokenizer).__name__,
        "pipeline": pipeline,
        "special_tokens": special,
        "truncation_side": tokenizer.truncation_side,
    }
    return f"sha256:{hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()}"
