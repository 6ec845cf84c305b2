"""Reading GLUE TSV files in each task's real layout, and the errors for bad data."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest

from experiments.config import compose_config
from experiments.glue_data import DataError, glue_data_fingerprint, load_glue, read_tsv_split
from experiments.glue_tasks import task_from_config


@cache  # composing the config is slow; GlueTask is frozen
def _task(name: str):
    return task_from_config(compose_config("glue", [f"task={name}"]).task)


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding=encoding)
    return path


def test_cola_headerless_file_without_final_newline(tmp_path: Path) -> None:
    path = _write(tmp_path / "dev.tsv", "gj04\t1\t\tThe sailors rode the breeze.\ngj04\t0\t*\tHe the ball kick.")
    examples, skipped = read_tsv_split(_task("cola"), path)
    assert examples.to_list() == [
        {"sentence": "The sailors rode the breeze.", "label": 1},
        {"sentence": "He the ball kick.", "label": 0},
    ]
    assert skipped == 0


def test_mrpc_with_byte_order_mark_and_unbalanced_quotes(tmp_path: Path) -> None:
    text = 'Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\tHe said " yes .\tHe agreed .\n'
    examples, _ = read_tsv_split(_task("mrpc"), _write(tmp_path / "train.tsv", text, "utf-8-sig"))
    assert examples[0] == {"sentence1": 'He said " yes .', "sentence2": "He agreed .", "label": 1}


def test_stsb_scores_and_rte_string_labels(tmp_path: Path) -> None:
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    stsb = _write(tmp_path / "s.tsv", header + "0\tg\tf\t2012\t1\tn\tn\tA man.\tA person.\t3.800\n")
    assert read_tsv_split(_task("stsb"), stsb)[0][0]["label"] == 3.8
    rte = _write(tmp_path / "r.tsv", "index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\tnot_entailment\n")
    assert read_tsv_split(_task("rte"), rte)[0][0]["label"] == 1


def test_mnli_uses_gold_label_and_both_dev_sets(tmp_path: Path) -> None:
    header = "index\tpromptID\tpairID\tgenre\ts1bp\ts2bp\ts1p\ts2p\tsentence1\tsentence2\tlabel1\tgold_label\n"
    row = "0\t1\t1\tg\tx\tx\tx\tx\tA cat.\tAn animal.\tentailment\tneutral\n"
    for stem in ("train", "dev_matched", "dev_mismatched"):
        _write(tmp_path / "MNLI" / f"{stem}.tsv", header + row)
    data = load_glue(_task("mnli"), tmp_path)
    assert list(data.evals) == ["dev_matched", "dev_mismatched"]
    assert data.train[0]["label"] == 1  # neutral in HF's order (entailment, neutral, contradiction)


def test_malformed_row_names_file_line_and_fix(tmp_path: Path) -> None:
    path = _write(tmp_path / "train.tsv", "sentence\tlabel\ngood film\t1\nbroken row\n")
    with pytest.raises(
        DataError,
        match=r"train\.tsv:3: malformed row, 1 columns: 'broken row' \(allowed: exactly 2 tab-separated columns\); "
        r"fix the row, or set data\.skip_malformed=true",
    ):
        read_tsv_split(_task("sst2"), path)
    examples, skipped = read_tsv_split(_task("sst2"), path, skip_malformed=True)
    assert len(examples) == 1 and skipped == 1


def test_unknown_label_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path / "train.tsv", "index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\tmaybe\n")
    with pytest.raises(
        DataError,
        match=r"train\.tsv:2: label 'maybe' is not one of entailment, not_entailment \(the labels of task rte\); fix",
    ):
        read_tsv_split(_task("rte"), path)


STSB_HEADER = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
SST2 = "sentence\tlabel\ngood film\t1\nbad film\t0\n"


@pytest.mark.parametrize("score", ["nan", "inf", "-inf", "5.5", "-0.1", "high"])
def test_stsb_score_outside_0_to_5_is_named(tmp_path: Path, score: str) -> None:
    path = _write(tmp_path / "dev.tsv", STSB_HEADER + f"0\tg\tf\t2012\t1\tn\tn\tA.\tB.\t{score}\n")
    with pytest.raises(
        DataError,
        match=rf"dev\.tsv:2: score '{score}' is not a valid stsb score \(allowed: finite numbers from 0 to 5\)",
    ):
        read_tsv_split(_task("stsb"), path)


def test_header_without_the_task_columns_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path / "train.tsv", "sentence\tlbl\ngood film\t1\n")
    with pytest.raises(DataError, match=r"train\.tsv:1: header lacks column\(s\) label \(found: sentence, lbl\)"):
        read_tsv_split(_task("sst2"), path)


def test_blank_line_is_malformed_and_skippable(tmp_path: Path) -> None:
    path = _write(tmp_path / "train.tsv", "sentence\tlabel\ngood film\t1\n\nbad film\t0\n")
    with pytest.raises(DataError, match=r"train\.tsv:3: blank line \(allowed: exactly 2 tab-separated columns\)"):
        read_tsv_split(_task("sst2"), path)
    assert len(read_tsv_split(_task("sst2"), path, skip_malformed=True)[0]) == 2


def test_non_utf8_bytes_are_named_by_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "train.tsv"
    path.write_bytes(b"sentence\tlabel\ngood film\t1\ncaf\xe9 film\t0\n")
    with pytest.raises(DataError, match=r"train\.tsv:3: byte\(s\) e9 at byte 4 are not UTF-8 .*iconv"):
        read_tsv_split(_task("sst2"), path)


def test_oversized_line_is_named_by_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "train.tsv", "sentence\tlabel\n" + "x" * 10_000_000 + "\t1\n")
    with pytest.raises(DataError, match=r"train\.tsv:2: line longer than 1,048,576 bytes"):
        read_tsv_split(_task("sst2"), path)


@pytest.mark.parametrize(
    ("text", "skip", "message"),
    [
        ("", False, r"train\.tsv: empty file"),
        ("sentence\tlabel\n", False, r"train\.tsv: no examples \(no rows\)"),
        ("sentence\tlabel\nbroken\n", True, r"train\.tsv: no examples \(1 malformed rows skipped\)"),
    ],
)
def test_files_without_examples_are_named(tmp_path: Path, text: str, skip: bool, message: str) -> None:
    with pytest.raises(DataError, match=message):
        read_tsv_split(_task("sst2"), _write(tmp_path / "train.tsv", text), skip_malformed=skip)


@pytest.mark.parametrize("key", ["max_train_examples", "max_eval_examples"])
@pytest.mark.parametrize("value", [0, -5])
def test_non_positive_limits_are_refused(tmp_path: Path, key: str, value: int) -> None:
    _sst2_folder(tmp_path)
    for read in (load_glue, glue_data_fingerprint):
        with pytest.raises(ValueError, match=rf"data\.{key}={value}: must be a positive integer or null"):
            read(_task("sst2"), tmp_path, **{key: value})


def test_limits_cut_train_and_every_eval_split(tmp_path: Path) -> None:
    data = load_glue(_task("sst2"), _sst2_folder(tmp_path), max_train_examples=1, max_eval_examples=1)
    assert len(data.train) == 1 and len(data.evals["dev"]) == 1


def _sst2_folder(root: Path, train: str = SST2) -> Path:
    _write(root / "SST-2" / "train.tsv", train)
    _write(root / "SST-2" / "dev.tsv", SST2)
    return root


def test_source_records_no_machine_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = load_glue(_task("sst2"), _sst2_folder(tmp_path / "glue"))
    assert data.source == "tsv:<local>/glue/SST-2"  # as the recorded data.dir: no absolute path in result.json
    monkeypatch.chdir(tmp_path)
    assert load_glue(_task("sst2"), Path("glue")).source == "tsv:glue/SST-2"  # a relative folder as given


def test_fingerprint_follows_content_and_options_not_path(tmp_path: Path) -> None:
    task = _task("sst2")
    first = load_glue(task, _sst2_folder(tmp_path / "a")).fingerprint
    assert glue_data_fingerprint(task, tmp_path / "a") == first
    assert load_glue(task, _sst2_folder(tmp_path / "b")).fingerprint == first
    flipped = _sst2_folder(tmp_path / "c", SST2.replace("good film\t1", "good film\t0"))
    assert load_glue(task, flipped).fingerprint != first
    assert glue_data_fingerprint(task, flipped) == load_glue(task, flipped).fingerprint
    assert glue_data_fingerprint(task, tmp_path / "a", max_train_examples=1) != first
    assert glue_data_fingerprint(task, tmp_path / "a", skip_malformed=True) != first
    assert glue_data_fingerprint(task, None) is None


def test_hub_fingerprint_is_the_datasets_fingerprint(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    from experiments import glue_data

    def fake_hub(labels: list[int]) -> datasets.DatasetDict:
        split = datasets.Dataset.from_dict({"sentence": ["good", "bad"], "label": labels})
        return datasets.DatasetDict(train=split, validation=split)

    monkeypatch.setattr(glue_data, "require_hub", lambda what: None)
    monkeypatch.setattr(datasets, "load_dataset", lambda *args: fake_hub([1, 0]))
    first = load_glue(_task("sst2"), None)
    assert first.source == "hub:nyu-mll/glue/sst2" and first.train[0]["label"] == 1
    monkeypatch.setattr(datasets, "load_dataset", lambda *args: fake_hub([0, 0]))
    assert load_glue(_task("sst2"), None).fingerprint != first.fingerprint


def test_missing_data_dir_and_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"data\.dir=.*nowhere does not exist.*GLUE TSV layout"):
        load_glue(_task("sst2"), tmp_path / "nowhere")
    with pytest.raises(DataError, match=r"SST-2/train\.tsv not found"):
        load_glue(_task("sst2"), tmp_path)


def test_hub_unreachable_fails_fast_naming_both_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from experiments import hub

    hub.hub_reachable.cache_clear()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(hub.HubUnavailableError, match=r"(?s)model\.name_or_path=.*data\.dir="):
        load_glue(_task("sst2"), None)
    assert time.perf_counter() - start < 5
    hub.hub_reachable.cache_clear()
