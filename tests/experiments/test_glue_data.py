"""Reading GLUE TSV files in each task's real layout, and the errors for bad data."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments.config import compose_config
from experiments.glue_data import DataError, load_glue, read_tsv_split
from experiments.glue_tasks import task_from_config


def _task(name: str):
    return task_from_config(compose_config("glue", [f"task={name}"]).task)


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding=encoding)
    return path


def test_cola_headerless_file_without_final_newline(tmp_path: Path) -> None:
    path = _write(tmp_path / "dev.tsv", "gj04\t1\t\tThe sailors rode the breeze.\ngj04\t0\t*\tHe the ball kick.")
    examples, skipped = read_tsv_split(_task("cola"), path)
    assert [(e.texts, e.label) for e in examples] == [
        (("The sailors rode the breeze.",), 1),
        (("He the ball kick.",), 0),
    ]
    assert skipped == 0


def test_mrpc_with_byte_order_mark_and_unbalanced_quotes(tmp_path: Path) -> None:
    text = 'Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\tHe said " yes .\tHe agreed .\n'
    examples, _ = read_tsv_split(_task("mrpc"), _write(tmp_path / "train.tsv", text, "utf-8-sig"))
    assert examples[0].texts == ('He said " yes .', "He agreed .") and examples[0].label == 1


def test_stsb_scores_and_rte_string_labels(tmp_path: Path) -> None:
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    stsb = _write(tmp_path / "s.tsv", header + "0\tg\tf\t2012\t1\tn\tn\tA man.\tA person.\t3.800\n")
    assert read_tsv_split(_task("stsb"), stsb)[0][0].label == pytest.approx(3.8)
    rte = _write(tmp_path / "r.tsv", "index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\tnot_entailment\n")
    assert read_tsv_split(_task("rte"), rte)[0][0].label == 1


def test_mnli_uses_gold_label_and_both_dev_sets(tmp_path: Path) -> None:
    header = "index\tpromptID\tpairID\tgenre\ts1bp\ts2bp\ts1p\ts2p\tsentence1\tsentence2\tlabel1\tgold_label\n"
    row = "0\t1\t1\tg\tx\tx\tx\tx\tA cat.\tAn animal.\tentailment\tneutral\n"
    for stem in ("train", "dev_matched", "dev_mismatched"):
        _write(tmp_path / "MNLI" / f"{stem}.tsv", header + row)
    data = load_glue(_task("mnli"), tmp_path)
    assert list(data.evals) == ["dev_matched", "dev_mismatched"]
    assert data.train[0].label == 1  # neutral in HF's order (entailment, neutral, contradiction)


def test_malformed_row_names_file_line_and_fix(tmp_path: Path) -> None:
    path = _write(tmp_path / "train.tsv", "sentence\tlabel\ngood film\t1\nbroken row\n")
    with pytest.raises(
        DataError,
        match=r"train\.tsv:3: malformed row, expected 2 tab-separated columns, found 1.*"
        r"data\.skip_malformed=true",
    ):
        read_tsv_split(_task("sst2"), path)
    examples, skipped = read_tsv_split(_task("sst2"), path, skip_malformed=True)
    assert len(examples) == 1 and skipped == 1


def test_unknown_label_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path / "train.tsv", "index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\tmaybe\n")
    with pytest.raises(DataError, match=r"train\.tsv:2: label 'maybe' is not one of entailment, not_entailment"):
        read_tsv_split(_task("rte"), path)


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
