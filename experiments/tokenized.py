"""Tokenize each split once: ``Dataset.map`` writes the encoded split to an Arrow file named by a fingerprint of
everything that shapes its tokens, and a rerun with the same inputs reads that file instead of tokenizing again.

The fingerprint is ours rather than the one ``datasets`` derives by pickling the map function and its arguments:
that one names a module-level function by reference (an edited encoder would reuse stale tokens) and pickles the
tokenizer with the folder it came from (the same tokenizer copied elsewhere would miss).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from datasets import Dataset

__all__ = ["CACHE_SUBDIR", "TokenCache", "cache_folder", "encode"]

# The folder under the datasets cache (HF_DATASETS_CACHE) that holds the encoded splits when data.cache_dir is null.
CACHE_SUBDIR = "lora-harness-tokenized"


def cache_folder(cache_dir: str | Path | None) -> Path:
    """``data.cache_dir``, or a folder in the ``datasets`` cache when it is null (read at call time, so a changed
    ``HF_DATASETS_CACHE`` applies)."""
    import datasets.config

    return Path(cache_dir).expanduser() if cache_dir else Path(datasets.config.HF_DATASETS_CACHE) / CACHE_SUBDIR


def _sources_digest(functions: Sequence[Callable[..., Any]]) -> str:
    """sha256 of the source files defining ``functions``: an edit to the encoding code retokenizes."""
    digest = hashlib.sha256()
    for name in sorted({function.__module__ for function in functions}):
        digest.update(f"{name}\0".encode())
        digest.update(Path(inspect.getfile(sys.modules[name])).read_bytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class TokenCache:
    """Where a run keeps its encoded splits, and the fingerprints of the data and tokenizer they are made from."""

    folder: Path
    data_fingerprint: str
    tokenizer_fingerprint: str

    def fingerprint(
        self, split: str, function: Callable[..., Any], options: Mapping[str, Any], code: Sequence[Callable[..., Any]]
    ) -> str:
        """sha256 over the data, split, tokenizer, encoding options, encoding code and tokenizer libraries."""
        identity = {
            "data": self.data_fingerprint,
            "split": split,
            "tokenizer": self.tokenizer_fingerprint,
            "function": f"{function.__module__}.{function.__qualname__}",
            "options": dict(options),
            "code": _sources_digest([function, *code]),
            "libraries": {name: metadata.version(name) for name in ("tokenizers", "transformers")},
        }
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def encode(
    examples: Dataset,
    function: Callable[..., dict[str, Any]],
    options: Mapping[str, Any],
    tokenizer: Any,
    *,
    batched: bool,
    split: str,
    cache: TokenCache | None = None,
    code: Sequence[Callable[..., Any]] = (),
) -> list[dict[str, Any]]:
    """The items ``examples.map(function, fn_kwargs={"tokenizer": tokenizer, **options})`` makes, in order.

    With ``cache`` the encoded split is written to ``<cache.folder>/<split>-<fingerprint>.arrow`` (atomically, by
    ``datasets``), and read from there when that file exists; without it, it is encoded in memory. ``options``
    must be JSON values; ``code`` names further functions whose modules shape the encoding.
    """
    mapped = {
        "function": function,
        "fn_kwargs": {"tokenizer": tokenizer, **options},
        "batched": batched,
        "remove_columns": examples.column_names,
        "desc": f"tokenize {split}",
    }
    if cache is None:
        from datasets.fingerprint import generate_random_fingerprint

        # a fingerprint of our own, so datasets does not pickle the tokenizer to make one for a result kept in memory
        encoded = examples.map(**mapped, keep_in_memory=True, new_fingerprint=generate_random_fingerprint())
    else:
        fingerprint = cache.fingerprint(split, function, options, code)
        path = cache.folder / f"{split}-{fingerprint}.arrow"
        encoded = examples.map(**mapped, new_fingerprint=fingerprint, cache_file_name=str(path))
    return encoded.to_list()
