"""Each split is tokenized once: a rerun reads the Arrow file named by the fingerprint of what shapes its tokens,
any change of data, length, tokenizer or encoding code tokenizes again, and bad data fails before tokenizing."""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from experiments.config import compose_config
from experiments.data_files import DataError
from experiments.fingerprints import tokenizer_fingerprint
from experiments.glue import run_glue
from experiments.lm import encode_prompt_target
from experiments.models import load_tokenizer
from experiments.runner import RunInputsChangedError, plain_config, run_directory
from experiments.synthetic import (
    VOCABULARY,
    e2e_vocabulary,
    write_e2e_folder,
    write_glue_folder,
    write_tiny_gpt2,
    write_tiny_roberta,
    write_word_tokenizer,
)
from experiments.tasks import E2EFamily, GlueFamily
from experiments.tokenized import CACHE_SUBDIR, TokenCache


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tokenized_assets")
    e2e = write_e2e_folder(root / "e2e", n_train=12, n_valid=4, n_test=4)
    return {
        "glue": write_glue_folder(root / "glue", n_train=24, n_dev=8),
        "roberta": write_tiny_roberta(root / "roberta"),
        "e2e": e2e,
        "gpt2": write_tiny_gpt2(root / "gpt2", e2e_vocabulary(e2e)),
    }


def _glue(assets: dict[str, Path], cache: Path | None, *extra: str, model: Path | None = None) -> GlueFamily:
    overrides = [
        "experiment=glue_quick",
        f"model.name_or_path={model or assets['roberta']}",
        f"data.dir={assets['glue']}",
        *([f"data.cache_dir={cache}"] if cache else []),
        *extra,
    ]
    family = GlueFamily(plain_config(compose_config("glue", overrides)))
    family.load(torch.device("cpu"))
    return family


def _snapshot(folder: Path) -> dict[str, int]:
    return {path.name: path.stat().st_mtime_ns for path in folder.iterdir()} if folder.is_dir() else {}


class _TokenizerCalls:
    """Counts calls of the tokenizer class, so a test sees whether anything was tokenized."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, tokenizer_class: type) -> None:
        self.count = 0
        original = tokenizer_class.__call__

        def counted(tokenizer: Any, *args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return original(tokenizer, *args, **kwargs)

        monkeypatch.setattr(tokenizer_class, "__call__", counted)


def test_a_rerun_reads_the_cached_arrow_files_without_tokenizing(assets, tmp_path: Path, monkeypatch) -> None:
    first = _glue(assets, tmp_path)
    cached = _snapshot(tmp_path)
    assert sorted(name.split("-")[0] for name in cached) == ["dev", "train"]
    assert all(name.endswith(".arrow") for name in cached)
    calls = _TokenizerCalls(monkeypatch, type(first.tokenizer))
    again = _glue(assets, tmp_path)
    assert calls.count == 0
    assert _snapshot(tmp_path) == cached  # read, not rewritten
    assert again.train_items == first.train_items and again.eval_items == first.eval_items


def test_changed_data_length_or_tokenizer_tokenizes_again(assets, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _glue(assets, cache)
    other = shutil.copytree(assets["roberta"], tmp_path / "other_tokenizer")
    write_word_tokenizer(other, list(reversed(VOCABULARY)), "roberta")  # the same words, other ids
    data = shutil.copytree(assets["glue"], tmp_path / "data")
    train = data / "SST-2" / "train.tsv"
    train.write_text(train.read_text(encoding="utf-8").replace("\t1\n", "\t0\n", 1), encoding="utf-8")
    for change in (["train.max_seq_length=9"], [f"model.name_or_path={other}"], [f"data.dir={data}"]):
        before = set(_snapshot(cache))
        _glue(assets, cache, *change)
        assert sorted(name.split("-")[0] for name in set(_snapshot(cache)) - before) == ["dev", "train"], change


def test_the_same_tokenizer_and_data_in_other_folders_hit_the_cache(assets, tmp_path: Path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    first = _glue(assets, cache)
    model, data = tmp_path / "model", tmp_path / "data"
    shutil.copytree(assets["roberta"], model)
    shutil.copytree(assets["glue"], data)
    calls = _TokenizerCalls(monkeypatch, type(first.tokenizer))
    moved = _glue(assets, cache, f"data.dir={data}", model=model)
    assert calls.count == 0 and moved.train_items == first.train_items
    assert moved.tokenizer_fingerprint == first.tokenizer_fingerprint


def test_glue_items_are_the_tokenizers_own_encoding(assets, tmp_path: Path) -> None:
    family = _glue(assets, tmp_path, "task=stsb", "train.max_seq_length=9")  # sentence pairs, some truncated
    tokenizer, dev = family.tokenizer, family.data.evals["dev"]
    expected = tokenizer(list(dev["sentence1"]), list(dev["sentence2"]), truncation=True, max_length=9)
    assert [item["input_ids"] for item in family.eval_items["dev"]] == expected["input_ids"]
    assert [item["attention_mask"] for item in family.eval_items["dev"]] == expected["attention_mask"]
    assert [item["labels"] for item in family.eval_items["dev"]] == list(dev["label"])
    assert any(len(ids) == 9 for ids in expected["input_ids"])


def _e2e(assets: dict[str, Path], cache: Path, *extra: str) -> E2EFamily:
    overrides = [
        "experiment=e2e_quick",
        f"model.name_or_path={assets['gpt2']}",
        f"data.dir={assets['e2e']}",
        f"data.cache_dir={cache}",
        *extra,
    ]
    family = E2EFamily(plain_config(compose_config("e2e", overrides)))
    family.load(torch.device("cpu"))
    return family


def test_e2e_items_are_prompt_and_target_encodings_and_are_cached(assets, tmp_path: Path, monkeypatch) -> None:
    family = _e2e(assets, tmp_path, "train.max_seq_length=24")  # short enough to cut some targets
    train, tokenizer = family.data.train, family.tokenizer
    expected = [
        encode_prompt_target(tokenizer, f"{mr} ||", f" {text}", 24)
        for mr, text in zip(train["mr"], train["text"], strict=True)
    ]
    assert family.train_items == expected
    assert any(len(item["input_ids"]) == 24 for item in expected)
    assert sorted(name.split("-")[0] for name in _snapshot(tmp_path)) == ["train", "valid"]
    calls = _TokenizerCalls(monkeypatch, type(tokenizer))
    assert _e2e(assets, tmp_path, "train.max_seq_length=24").valid_items == family.valid_items
    assert calls.count == 0


def test_malformed_data_fails_by_file_and_line_before_tokenizing(assets, tmp_path: Path, monkeypatch) -> None:
    data = tmp_path / "data"
    shutil.copytree(assets["glue"], data)
    with (data / "SST-2" / "dev.tsv").open("a", encoding="utf-8") as handle:
        handle.write("a row without its label\n")
    calls = _TokenizerCalls(monkeypatch, type(load_tokenizer(str(assets["roberta"]))))
    with pytest.raises(DataError, match=r"SST-2/dev\.tsv:10: malformed row, 1 columns"):
        _glue(assets, tmp_path / "cache", f"data.dir={data}")
    assert calls.count == 0 and not (tmp_path / "cache").exists()


def test_null_cache_dir_uses_the_datasets_cache(assets, datasets_cache_in_tmp: Path) -> None:
    family = _glue(assets, None)
    assert family.token_cache(family.data.fingerprint).folder == datasets_cache_in_tmp / CACHE_SUBDIR
    assert _snapshot(datasets_cache_in_tmp / CACHE_SUBDIR)


def test_hub_splits_are_encoded_like_local_ones(assets, tmp_path: Path, monkeypatch) -> None:
    import datasets

    from experiments import glue_data

    local = _glue(assets, tmp_path / "local")
    train, dev = local.data.train, local.data.evals["dev"]

    def fake_hub(*args: str) -> datasets.DatasetDict:  # the hub's layout: an index column beside the task's
        return datasets.DatasetDict(
            train=train.add_column("idx", list(range(len(train)))),
            validation=dev.add_column("idx", list(range(len(dev)))),
        )

    monkeypatch.setattr(glue_data, "require_hub", lambda what: None)
    monkeypatch.setattr(datasets, "load_dataset", fake_hub)
    hub = _glue(assets, tmp_path / "hub", "data.dir=null")
    assert hub.data.source == "hub:nyu-mll/glue/sst2"
    assert hub.train_items == local.train_items and hub.eval_items == local.eval_items
    assert len(_snapshot(tmp_path / "hub")) == 2


def test_tokenizer_fingerprint_follows_the_vocabulary_not_the_folder_or_a_call(assets, tmp_path: Path) -> None:
    tokenizer = load_tokenizer(str(assets["roberta"]))
    fingerprint = tokenizer_fingerprint(tokenizer)
    tokenizer(["good film"], truncation=True, max_length=3)  # sets the backend's truncation state
    assert tokenizer_fingerprint(tokenizer) == fingerprint
    copy = shutil.copytree(assets["roberta"], tmp_path / "copy")
    assert tokenizer_fingerprint(load_tokenizer(str(copy))) == fingerprint
    write_word_tokenizer(copy, list(reversed(VOCABULARY)), "roberta")
    assert tokenizer_fingerprint(load_tokenizer(str(copy))) != fingerprint


def test_an_edit_to_the_encoding_code_changes_the_fingerprint(tmp_path: Path, monkeypatch) -> None:
    module = tmp_path / "some_encoder.py"
    module.write_text("def encode(row, tokenizer):\n    return tokenizer(row['text'])\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    encoder = importlib.import_module("some_encoder")
    cache = TokenCache(tmp_path, "data", "tokenizer")
    before = cache.fingerprint("train", encoder.encode, {"max_length": 8}, [])
    assert cache.fingerprint("train", encoder.encode, {"max_length": 8}, []) == before
    assert cache.fingerprint("train", encoder.encode, {"max_length": 9}, []) != before
    assert cache.fingerprint("dev", encoder.encode, {"max_length": 8}, []) != before
    module.write_text("def encode(row, tokenizer):\n    return tokenizer(row['text'].lower())\n", encoding="utf-8")
    assert cache.fingerprint("train", encoder.encode, {"max_length": 8}, []) != before


def test_the_cache_folder_is_not_part_of_the_run_identity(assets, tmp_path: Path) -> None:
    def run_dir(*extra: str) -> Path:
        return run_directory(plain_config(compose_config("glue", ["experiment=glue_quick", *extra])), "glue")

    assert run_dir(f"data.cache_dir={tmp_path}") == run_dir()


def test_a_finished_run_is_refused_when_its_tokenizer_changed(assets, tmp_path: Path) -> None:
    model = shutil.copytree(assets["roberta"], tmp_path / "model")
    overrides = [
        "experiment=glue_quick",
        f"model.name_or_path={model}",
        f"data.dir={assets['glue']}",
        f"data.cache_dir={tmp_path / 'cache'}",
        f"results_dir={tmp_path / 'results'}",
        "train.epochs=1",
    ]
    first = run_glue(compose_config("glue", overrides))
    assert first["inputs"]["tokenizer"] == tokenizer_fingerprint(load_tokenizer(str(model)))
    write_word_tokenizer(model, list(reversed(VOCABULARY)), "roberta")  # the weights are unchanged
    with pytest.raises(RunInputsChangedError, match=r"tokenizer: sha256:\w+ there, sha256:\w+ now"):
        run_glue(compose_config("glue", overrides))


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("regression", [False, True])
def test_glue_collate_equals_the_tokenizers_own_padding(assets, tmp_path: Path, side: str, regression: bool) -> None:
    from experiments.tasks.glue import make_collate

    tokenizer = load_tokenizer(assets["roberta"])
    tokenizer.padding_side = side
    words = VOCABULARY[3:40]
    pairs = [(" ".join(words[: 3 + i]), " ".join(words[i : i + 2 + 2 * i])) for i in range(5)]
    items = [
        {**tokenizer(a, b, return_token_type_ids=True), "labels": 0.5 * i if regression else i % 2}
        for i, (a, b) in enumerate(pairs)
    ]
    batch = make_collate(tokenizer, regression)(items)
    features = [{k: v for k, v in item.items() if k != "labels"} for item in items]
    expected = tokenizer.pad(features, padding=True, pad_to_multiple_of=8, return_tensors="pt")
    assert set(batch) == {*expected, "labels"} and "token_type_ids" in batch
    for key, tensor in expected.items():
        assert torch.equal(batch[key], tensor), key
    assert batch["input_ids"].shape[1] % 8 == 0
    assert batch["labels"].dtype == (torch.float32 if regression else torch.long)
