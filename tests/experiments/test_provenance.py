"""A result names the code that made it: the checkout's commit, and a fingerprint of the code's own bytes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from experiments.fingerprints import CODE_ROOT, code_fingerprint
from experiments.results import _git_commit


def _copy_code(destination: Path) -> Path:
    for package in ("lora", "experiments", "conf"):
        shutil.copytree(CODE_ROOT / package, destination / package, ignore=shutil.ignore_patterns("__pycache__"))
    return destination


def test_the_code_fingerprint_follows_the_code_not_its_folder(tmp_path: Path) -> None:
    first, second = _copy_code(tmp_path / "a"), _copy_code(tmp_path / "b")
    assert code_fingerprint(first) == code_fingerprint(second) == code_fingerprint(CODE_ROOT)
    (second / "README.md").write_text("not code\n")
    assert code_fingerprint(second) == code_fingerprint(first)
    for edited in (second / "experiments" / "training.py", second / "conf" / "train" / "glue.yaml"):
        original = edited.read_text()
        edited.write_text(original + "\n# an edit\n")
        assert code_fingerprint(second) != code_fingerprint(first), edited.name
        edited.write_text(original)
    assert code_fingerprint(second) == code_fingerprint(first)


def test_the_commit_is_the_codes_checkout_whatever_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = _git_commit()
    monkeypatch.chdir(tmp_path)  # not a repository
    assert _git_commit() == here
