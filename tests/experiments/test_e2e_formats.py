"""The E2E file formats and the CLI's error handling (no Java needed: every case fails before scoring)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from experiments.e2e_metrics import (
    E2EFormatError,
    E2EScorer,
    JavaNotFoundError,
    group_references_by_mr,
    read_hypotheses,
    read_mr_text_file,
    read_references,
    score_e2e,
    write_hypotheses,
    write_references,
)

REPOSITORY = Path(__file__).resolve().parents[2]


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_read_references_groups_by_blank_lines(tmp_path: Path) -> None:
    path = _write(tmp_path / "ref.txt", "a 1\na 2\n\nb 1\n\nc 1  \nc 2\nc 3\n\n\n")
    assert read_references(path) == [["a 1", "a 2"], ["b 1"], ["c 1", "c 2", "c 3"]]


def test_read_references_without_blank_lines_is_one_reference_per_mr(tmp_path: Path) -> None:
    # The official reader's rule: a file that is a single group holds single references.
    assert read_references(_write(tmp_path / "ref.txt", "a\nb\nc\n")) == [["a"], ["b"], ["c"]]


def test_read_references_rejects_an_mr_without_references(tmp_path: Path) -> None:
    path = _write(tmp_path / "ref.txt", "a 1\n\n\nb 1\n")
    with pytest.raises(E2EFormatError, match=r"ref\.txt, line 3: a second blank line in a row"):
        read_references(path)


def test_read_hypotheses_keeps_blank_lines_as_empty_outputs(tmp_path: Path) -> None:
    path = _write(tmp_path / "hyp.txt", " first \r\n\r\nthird\n")
    assert read_hypotheses(path) == ["first", "", "third"]


@pytest.mark.parametrize("reader", [read_hypotheses, read_references, read_mr_text_file])
def test_readers_name_missing_and_empty_files(reader, tmp_path: Path) -> None:
    with pytest.raises(E2EFormatError, match=r"file not found: .*nowhere\.txt \(check the path\)"):
        reader(tmp_path / "nowhere.txt")
    with pytest.raises(E2EFormatError, match=r"empty\.txt is empty"):
        reader(_write(tmp_path / "empty.txt", "\n  \n"))


def test_mr_text_file_groups_all_texts_of_an_mr(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "test.txt",
        "name : A | food : pub||A is a pub. \nname : B||B.\nname : A | food : pub||A!\n",
    )
    pairs = read_mr_text_file(path)
    assert pairs == [
        ("name : A | food : pub", "A is a pub."),
        ("name : B", "B."),
        ("name : A | food : pub", "A!"),
    ]
    assert group_references_by_mr(pairs) == (
        ["name : A | food : pub", "name : B"],
        [["A is a pub.", "A!"], ["B."]],
    )


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("just text", r"no '\|\|' between the MR and the text"),
        ("mr||x||text", r"2 '\|\|' separators"),
        ("name : A |||A.", r"'\|\|\|' leaves the boundary between the MR and the text ambiguous"),
        ("  ||A is a pub.", r"empty MR before '\|\|'"),
        ("name : A||  ", r"empty text after '\|\|'"),
    ],
)
def test_mr_text_file_refuses_anything_but_one_mr_and_one_text(tmp_path: Path, line: str, problem: str) -> None:
    path = _write(tmp_path / "test.txt", f"mr||text\n\n{line}\n")
    with pytest.raises(
        E2EFormatError, match=rf"test\.txt:3: {problem} \(allowed: exactly one '\|\|'.*\); fix the line"
    ):
        read_mr_text_file(path)


@pytest.mark.parametrize("reader", [read_hypotheses, read_references, read_mr_text_file])
def test_readers_name_file_and_line_of_non_utf8_bytes(reader, tmp_path: Path) -> None:
    path = tmp_path / "data.txt"
    path.write_bytes("mr||text\r\nmr||caf\u00e9\n".encode() + b"mr||caf\xe9\n")
    with pytest.raises(E2EFormatError, match=r"data\.txt:3: byte\(s\) e9 are not UTF-8 .*iconv"):
        reader(path)


def test_writers_round_trip(tmp_path: Path) -> None:
    references = [["a 1", "a 2"], ["b 1"], ["c 1", "c 2"]]
    write_references(tmp_path / "ref.txt", references)
    write_hypotheses(tmp_path / "hyp.txt", ["x", "", "z"])
    assert read_references(tmp_path / "ref.txt") == references
    assert read_hypotheses(tmp_path / "hyp.txt") == ["x", "", "z"]


def test_writers_refuse_what_the_format_cannot_hold(tmp_path: Path) -> None:
    with pytest.raises(E2EFormatError, match="a single MR with several references cannot be written"):
        write_references(tmp_path / "ref.txt", [["a", "b"]])
    with pytest.raises(E2EFormatError, match="reference 1 of MR 0 is empty"):
        write_references(tmp_path / "ref.txt", [["a", ""], ["b"]])
    with pytest.raises(E2EFormatError, match=r"hypothesis 1 is 'two\\nlines': it must be one line"):
        write_hypotheses(tmp_path / "hyp.txt", ["one", "two\nlines"])


@pytest.mark.parametrize(
    ("hypotheses", "references", "message"),
    [
        (["a", "b", "c"], [["a"], ["b"]], "3 hypotheses but 2 reference groups"),
        ([], [], "the corpus is empty"),
        (["a"], [[]], "MR 0 has references"),
        (["a"], [["x", " "]], "reference 1 of MR 0 is ' '"),
        ("a", [["a"]], "not one string"),
    ],
)
def test_score_e2e_rejects_malformed_corpora(hypotheses, references, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        score_e2e(hypotheses, references)


def test_missing_java_is_named_with_the_fix() -> None:
    with pytest.raises(JavaNotFoundError, match=r"Java was not found .*Install a Java runtime"):
        E2EScorer(java="/nonexistent/bin/java")
    with pytest.raises(JavaNotFoundError, match="Java was not found"):
        score_e2e(["a"], [["a"]], java="/nonexistent/bin/java")


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "experiments.e2e_eval", *args],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        check=False,
    )


def test_cli_names_counts_and_fix_when_hyp_and_ref_disagree(tmp_path: Path) -> None:
    hyp = _write(tmp_path / "hyp.txt", "a\nb\nc\n\n")
    ref = _write(tmp_path / "ref.txt", "a 1\na 2\n\nb 1\n\nc 1\n")
    completed = _run_cli("--hyp", str(hyp), "--ref", str(ref))
    assert completed.returncode == 2
    assert completed.stdout == ""
    assert "hyp.txt has 4 lines but REF" in completed.stderr
    assert "ref.txt has 3 MR groups: give exactly one output line per MR" in completed.stderr
    assert "HYP ends with a blank line" in completed.stderr


def test_cli_reports_missing_files_and_java(tmp_path: Path) -> None:
    ref = _write(tmp_path / "ref.txt", "a 1\n\nb 1\n")
    missing = _run_cli("--hyp", str(tmp_path / "missing.txt"), "--ref", str(ref))
    assert missing.returncode == 2
    assert "error: HYP file not found:" in missing.stderr
    hyp = _write(tmp_path / "hyp.txt", "a\nb\n")
    no_java = _run_cli("--hyp", str(hyp), "--ref", str(ref), "--java", "/nonexistent/bin/java")
    assert no_java.returncode == 3
    assert "error: Java was not found" in no_java.stderr
