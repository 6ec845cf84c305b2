"""The training benchmark compares like with like: every system in every mode, ratios within one mode."""

from __future__ import annotations

import pytest

from benchmarks.training import MODES, SYSTEMS, VARIANTS, report, with_ratios


def test_every_system_runs_in_every_mode() -> None:
    assert {(v.system, v.mode) for v in VARIANTS} == {(s, m) for s in SYSTEMS for m in MODES}


def _row(system: str, mode: str, ms: float, mem: float) -> dict:
    return {"benchmark": "train_step", "model": "m", "system": system, "mode": mode, "ms": ms, "peak_mem_gib": mem}


def test_ratios_are_taken_only_against_peers_in_the_same_mode() -> None:
    rows = with_ratios(
        [
            _row("ours", "eager", 60.0, 9.0),
            _row("peft", "eager", 66.0, 10.0),
            _row("full_ft", "eager", 80.0, 15.0),
            _row("ours", "compile", 40.0, 6.0),
            _row("peft", "compile", 30.0, 8.0),
            _row("ours", "compile+cudagraphs", 20.0, 6.0),  # no peers measured in this mode
        ]
    )
    ours_eager, _, _, ours_compiled, _, ours_graphs = rows
    assert ours_eager["vs_peft"] == pytest.approx(66 / 60) and ours_eager["vs_full_ft"] == pytest.approx(60 / 80)
    assert ours_eager["mem_vs_peft"] == pytest.approx(0.9)
    assert ours_compiled["vs_peft"] == pytest.approx(30 / 40) and "vs_full_ft" not in ours_compiled
    assert not {"vs_peft", "vs_full_ft", "mem_vs_peft"} & set(ours_graphs)


def test_report_groups_rows_by_mode_and_lists_what_was_not_measured() -> None:
    rows = with_ratios([_row("peft", "compile", 30.0, 8.0), _row("ours", "eager", 60.0, 9.0)])
    rows.append({"benchmark": "train_step", "model": "m", "system": "loralib", "mode": "eager", "error": "boom"})
    text = report("m", rows, "GPU X", "python -m benchmarks.training --models m")
    assert text.index("| eager | ours") < text.index("| compile | peft")
    assert "- loralib [eager]: boom" in text and "GPU X" in text
