"""The Section 7 analyses on real adapter files: matrices read back, both commands end to end, refusals.

Adapters are saved from tiny models with random A and B (as after training) via ``lora.inject_lora`` and
``lora.save_adapter``; the reference for every matrix is the library's own layer (``delta_weight()``)
and the frozen weight of the model the adapter was saved from.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from transformers import GPT2LMHeadModel, RobertaForSequenceClassification

import lora
from experiments.adapted_matrices import AnalysisInputError, frozen_weights, pair_matrices, read_source
from experiments.analysis import _amplification_interpretation, main
from experiments.fingerprints import sha256_file
from tests.tiny_models import tiny_gpt2_config, tiny_roberta_config


def _randomise(model: nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.3)


def _adapted_roberta(targets: list[str], r: int, seed: int, **config) -> nn.Module:
    torch.manual_seed(0)  # the same pretrained weights for every adapter of one config
    model = RobertaForSequenceClassification(tiny_roberta_config(**config)).eval()
    lora.inject_lora(model, targets, r=r, lora_alpha=2 * r)
    _randomise(model, seed)
    return model


def _save_run(model: nn.Module, run_dir: Path, base: Path, task: str = "sst2", seed: int = 0) -> Path:
    """A run directory as the GLUE runner writes it: result.json beside adapter/."""
    lora.save_adapter(model, run_dir / "adapter", metadata={"task": task, "model": "tiny-roberta", "seed": seed})
    result = {"status": "completed", "method": "lora", "model": "tiny-roberta", "task": task, "seed": seed}
    (run_dir / "result.json").write_text(json.dumps({**result, "model_source": str(base)}))
    return run_dir


@pytest.fixture(scope="module")
def roberta_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("tiny-roberta")
    RobertaForSequenceClassification(tiny_roberta_config()).save_pretrained(str(directory))
    return directory


def test_matrices_read_back_equal_the_layers_delta_and_frozen_weights(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = GPT2LMHeadModel(tiny_gpt2_config()).eval()
    model.save_pretrained(str(tmp_path / "base"))
    lora.inject_lora(model, ["Wq", "Wv"], r=2, lora_alpha=4)
    lora.inject_lora(model, ["Wo"], r=3, lora_alpha=5, use_rslora=True)
    _randomise(model, seed=1)
    lora.save_adapter(model, tmp_path / "adapter")

    source = read_source(tmp_path / "adapter")
    assert source.base_model is None  # built from a config: nothing to record
    assert [m.label for m in source.matrices] == ["L0 Wq", "L0 Wv", "L0 Wo", "L1 Wq", "L1 Wv", "L1 Wo"]
    assert source.label == "r2-3"
    weights = frozen_weights(tmp_path / "base", source.matrices)
    layers = dict(lora.named_lora_layers(model))
    for matrix in source.matrices:
        layer = layers[matrix.module]
        full_delta = layer.delta_weight().detach().double().T  # Conv1D layout (in, out) -> (out, in)
        full_w = layer.frozen_weight.detach().double().T
        rows = slice(None)
        if matrix.slice_index is not None:  # c_attn is q | k | v along the outputs
            assert matrix.slice_index == {"Wq": 0, "Wv": 2}[matrix.matrix]
            rows = slice(matrix.slice_index * 32, (matrix.slice_index + 1) * 32)
        torch.testing.assert_close(matrix.delta(), full_delta[rows])
        torch.testing.assert_close(weights[matrix.key], full_w[rows])
    assert matrix.scaling == pytest.approx(5 / math.sqrt(3))


def test_pair_command_writes_both_analyses(tmp_path: Path, roberta_base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_a = _save_run(_adapted_roberta(["Wq", "Wv"], r=4, seed=1), tmp_path / "runs" / "r4" / "seed0", roberta_base)
    model_b = _adapted_roberta(["Wq", "Wv"], r=8, seed=2)
    _save_run(model_b, tmp_path / "runs" / "r8" / "seed3", roberta_base, seed=3)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # the adapters lie outside the working directory

    main(["pair", str(run_a), str(tmp_path / "runs" / "r8"), "--out", str(tmp_path / "out"), "--draws", "4"])

    subspace_dir = tmp_path / "out" / "subspace_similarity"
    doc = json.loads((subspace_dir / "analysis.json").read_text())
    assert doc["kind"] == "subspace_similarity" and doc["model"] == "tiny-roberta" and doc["task"] == "sst2"
    assert "r4 seed0 vs r8 seed3" in doc["title"] and "φ(1,1)" in doc["summary_markdown"]
    assert doc["figures"][0] == "phi_summary.png" and "figures/phi_L1_Wv.png" in doc["figures"]
    assert doc["tables"] == ["phi_summary.csv", "phi_grid.csv"]
    # Inputs outside the working directory are named without the machine's path, and by their weights' digest.
    assert str(tmp_path) not in json.dumps(doc)
    assert doc["inputs"][0] == {
        "path": "<local>/runs/r4/seed0/adapter",
        "sha256": sha256_file(run_a / "adapter" / "adapter.safetensors"),
    }
    for name in doc["figures"] + doc["tables"]:
        assert (subspace_dir / name).stat().st_size > 0, name
    summary = list(csv.DictReader((subspace_dir / "phi_summary.csv").open()))
    assert [(row["layer"], row["matrix"]) for row in summary] == [("0", "Wq"), ("0", "Wv"), ("1", "Wq"), ("1", "Wv")]
    grid = list(csv.DictReader((subspace_dir / "phi_grid.csv").open()))
    assert len(grid) == 4 * 4 * 8
    # Independent recomputation of one cell from the saved tensors.
    layer_a = dict(lora.named_lora_layers(_adapted_roberta(["Wq", "Wv"], r=4, seed=1)))
    layer_b = dict(lora.named_lora_layers(model_b))
    name = "roberta.encoder.layer.1.attention.self.value"
    a1, a2 = layer_a[name].lora_A.detach().double(), layer_b[name].lora_A.detach().double()
    v1 = torch.linalg.svd(a1, full_matrices=False).Vh[:2].T  # top-2 right-singular vectors
    v2 = torch.linalg.svd(a2, full_matrices=False).Vh[:5].T
    expected = torch.linalg.matrix_norm(v1.T @ v2).item() ** 2 / 2
    cell = next(r for r in grid if r["module"] == name and r["i"] == "2" and r["j"] == "5")
    assert float(cell["phi"]) == pytest.approx(expected)
    assert float(cell["phi_random"]) == pytest.approx(5 / 32)
    assert float(summary[3]["mean_phi_random_top"]) == pytest.approx(
        sum(max(i, j) / 32 for i in range(1, 5) for j in range(1, 9)) / 32
    )

    for label, model in (("r4_seed0", None), ("r8_seed3", model_b)):
        amp_dir = tmp_path / "out" / f"amplification_{label}"
        doc = json.loads((amp_dir / "analysis.json").read_text())
        assert doc["kind"] == "amplification" and doc["figures"] == ["amplification.png"]
        text = json.dumps(doc)  # neither the adapter's nor the base model's folder, in the title or elsewhere
        assert str(tmp_path) not in text and str(roberta_base) not in text and "<local>/tiny-roberta" in doc["title"]
        assert doc["tables"] == ["amplification.csv"] and "amplification factor" in doc["summary_markdown"]
        rows = list(csv.DictReader((amp_dir / "amplification.csv").open()))
        assert len(rows) == 4 and (amp_dir / "amplification.png").stat().st_size > 0
        if model is not None:
            layers = dict(lora.named_lora_layers(model))
            for row in rows:
                delta = layers[row["module"]].delta_weight().detach().double()
                assert float(row["norm_dW"]) == pytest.approx(torch.linalg.matrix_norm(delta).item())
                assert float(row["amplification"]) == pytest.approx(float(row["norm_dW"]) / float(row["proj_dW"]))
                assert int(row["r"]) == 8


def test_identical_directions_through_the_command_give_phi_one(tmp_path: Path, roberta_base: Path) -> None:
    model = _adapted_roberta(["Wq"], r=4, seed=1)
    lora.save_adapter(model, tmp_path / "one")
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for _, layer in lora.named_lora_layers(model):
            rotation, _ = torch.linalg.qr(torch.randn(4, 4, generator=gen))
            layer.lora_A.copy_(2.0 * rotation @ layer.lora_A)  # same right-singular vectors
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=gen))
    lora.save_adapter(model, tmp_path / "two")
    main(["subspace", str(tmp_path / "one"), str(tmp_path / "two"), "--out", str(tmp_path / "out")])
    grid = list(csv.DictReader((tmp_path / "out" / "phi_grid.csv").open()))
    assert len(grid) == 2 * 16
    assert [float(row["phi"]) for row in grid] == pytest.approx([1.0] * 32)
    doc = json.loads((tmp_path / "out" / "analysis.json").read_text())
    assert doc["summary_markdown"].count("The top direction is shared") == 1
    # Through B, the directions differ: the left-singular vectors of dW = BA now come from unrelated Bs.
    main(["subspace", str(tmp_path / "one"), str(tmp_path / "two"), "--basis", "dW_left", "--out", str(tmp_path / "l")])
    left = [float(row["phi"]) for row in csv.DictReader((tmp_path / "l" / "phi_grid.csv").open())]
    assert min(left) < 0.9


def _check_refusal(first: Path, second: Path, message: str, *extra: str) -> None:
    with pytest.raises(AnalysisInputError, match=message):
        pair_matrices(read_source(first), read_source(second), list(extra) or None)


def test_mismatched_adapters_are_refused(tmp_path: Path) -> None:
    lora.save_adapter(_adapted_roberta(["Wq"], r=4, seed=1), tmp_path / "q")
    lora.save_adapter(_adapted_roberta(["Wv"], r=4, seed=1), tmp_path / "v")
    lora.save_adapter(_adapted_roberta(["Wq", "Wv"], r=2, seed=1), tmp_path / "qv")
    lora.save_adapter(_adapted_roberta(["Wq"], r=4, seed=1, hidden_size=48, intermediate_size=96), tmp_path / "wide")
    _check_refusal(tmp_path / "q", tmp_path / "v", r"adapt different layers \(L0 Wq, L1 Wq in .*q; L0 Wv, L1 Wv in")
    _check_refusal(
        tmp_path / "qv", tmp_path / "q", r"do not adapt the same matrices: .*layer\.0\.attention\.self\.value"
    )
    _check_refusal(
        tmp_path / "q", tmp_path / "wide", r"L0 Wq .* is 32 x 32 in .* but 48 x 48 in .*different base models"
    )
    _check_refusal(tmp_path / "qv", tmp_path / "q", r"adapter in .*q adapts no Wv: it adapts Wq", "Wq", "Wv")
    pairs = pair_matrices(read_source(tmp_path / "qv"), read_source(tmp_path / "q"), ["Wq"])
    assert [(one.label, one.r, other.r) for one, other in pairs] == [("L0 Wq", 2, 4), ("L1 Wq", 2, 4)]


def test_inputs_that_are_not_one_lora_adapter_are_refused(tmp_path: Path, roberta_base: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(AnalysisInputError, match=r"empty is not a LoRA adapter or run directory: no adapter_config"):
        read_source(tmp_path / "empty")
    full_ft = tmp_path / "full_ft" / "seed0"
    full_ft.mkdir(parents=True)
    (full_ft / "result.json").write_text(json.dumps({"status": "completed", "method": "full_ft"}))
    with pytest.raises(AnalysisInputError, match=r"seed0 is a full_ft run, which has no LoRA adapter"):
        read_source(full_ft)
    (tmp_path / "peft").mkdir()
    (tmp_path / "peft" / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    with pytest.raises(lora.AdapterMismatchError, match=r"holds a PEFT adapter"):
        read_source(tmp_path / "peft")

    model = _adapted_roberta(["Wq"], r=4, seed=1)
    for seed in (0, 1):
        _save_run(model, tmp_path / "tag" / f"seed{seed}", roberta_base, seed=seed)
    with pytest.raises(AnalysisInputError, match=r"tag holds 2 adapters; pass one of them or choose one with --seed"):
        read_source(tmp_path / "tag")
    assert read_source(tmp_path / "tag", seed=1).path == tmp_path / "tag" / "seed1" / "adapter"
    with pytest.raises(AnalysisInputError, match=r"seed0 holds no seed1 run; its adapters are:\n  .*seed0/adapter"):
        read_source(tmp_path / "tag" / "seed0", seed=1)

    with pytest.raises(SystemExit, match=r"error: .*empty is not a LoRA adapter"):
        main(["subspace", str(tmp_path / "empty"), str(tmp_path / "tag"), "--seed", "0"])
    with pytest.raises(SystemExit, match=r"adapter in .*seed0/adapter adapts no Wk: it adapts Wq"):
        main(["amplification", str(tmp_path / "tag"), "--seed", "0", "--matrices", "Wk"])


def test_amplification_refuses_a_base_model_the_adapter_does_not_fit(tmp_path: Path, roberta_base: Path) -> None:
    lora.save_adapter(_adapted_roberta(["Wq"], r=4, seed=1), tmp_path / "adapter")
    torch.manual_seed(0)
    RobertaForSequenceClassification(tiny_roberta_config(hidden_size=48)).save_pretrained(str(tmp_path / "wide"))
    with pytest.raises(SystemExit, match=r"query\.weight of .*wide' has shape \(48, 48\), but the adapter was trained"):
        main(["amplification", str(tmp_path / "adapter"), "--base", str(tmp_path / "wide"), "--out", str(tmp_path)])
    untrained = _adapted_roberta(["Wq"], r=4, seed=1)
    with torch.no_grad():
        for _, layer in lora.named_lora_layers(untrained):
            layer.lora_B.zero_()
    lora.save_adapter(untrained, tmp_path / "untrained")
    with pytest.raises(SystemExit, match=r"L0 Wq .*: dW = B A is zero"):
        main(["amplification", str(tmp_path / "untrained"), "--base", str(roberta_base), "--out", str(tmp_path / "o")])


@pytest.mark.parametrize(
    ("proj_dw", "proj_w", "verdict"),
    [
        (1.02, 10.0, "aligned with W beyond chance in only 0 of 2 matrices"),  # inside the random spread
        (1.3, 10.0, "more aligned with W than random directions, but only slightly"),
        (4.0, 10.0, "amplifies directions that W does not emphasise"),  # the paper's finding (Section 7.3)
        (6.0, 10.0, "mostly reinforces W's own top directions"),
    ],
)
def test_amplification_verdict_weighs_the_random_draws_spread(proj_dw: float, proj_w: float, verdict: str) -> None:
    row = {"proj_dW": proj_dw, "proj_W": proj_w, "proj_random": 1.0, "proj_random_std": 0.05, "amplification": 2.0}
    text = _amplification_interpretation([row, row])
    assert verdict in text and f"in {2 if proj_dw > 1.15 else 0} of 2 matrices" in text


def test_adapters_below_the_working_directory_are_named_relative_to_it(
    tmp_path: Path, roberta_base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _save_run(_adapted_roberta(["Wq"], r=2, seed=1), tmp_path / "runs" / "r2" / "seed0", roberta_base)
    monkeypatch.chdir(tmp_path)
    main(["amplification", str(run), "--out", str(tmp_path / "out"), "--draws", "2"])
    doc = json.loads((tmp_path / "out" / "analysis.json").read_text())
    assert doc["inputs"] == [
        {"path": "runs/r2/seed0/adapter", "sha256": sha256_file(run / "adapter" / "adapter.safetensors")}
    ]
    monkeypatch.chdir(run / "adapter")  # the working directory is the adapter itself: "." would name nothing
    main(["amplification", str(run), "--out", str(tmp_path / "out2"), "--draws", "2"])
    doc = json.loads((tmp_path / "out2" / "analysis.json").read_text())
    assert doc["inputs"][0]["path"] == "<local>/runs/r2/seed0/adapter"


def test_amplification_needs_two_random_draws_to_weigh_chance(tmp_path: Path, roberta_base: Path) -> None:
    run = _save_run(_adapted_roberta(["Wq"], r=2, seed=1), tmp_path / "run", roberta_base)
    for command in (["amplification", str(run)], ["pair", str(run), str(run)]):
        with pytest.raises(SystemExit, match=r"--draws=1 is too few.*use 2 or more"):
            main([*command, "--out", str(tmp_path / "out"), "--draws", "1"])
        assert not (tmp_path / "out").exists()  # refused before the subspace half of a pair ran


def test_amplification_verdict_counts_matrices_beyond_three_random_deviations() -> None:
    def row(sds_above_random: float) -> dict[str, float]:
        proj = 1.0 + 0.05 * sds_above_random
        return {"proj_dW": proj, "proj_W": 10.0, "proj_random": 1.0, "proj_random_std": 0.05, "amplification": 2.0}

    two_of_five = _amplification_interpretation([row(3.1), row(3.1), row(2.9), row(2.9), row(0.0)])
    assert two_of_five.startswith("ΔW is aligned with W beyond chance in only 2 of 5 matrices")
    three_of_five = _amplification_interpretation([row(3.1), row(3.1), row(3.1), row(2.9), row(0.0)])
    assert three_of_five.startswith("ΔW is more aligned with W than random directions, but only slightly")
    half = _amplification_interpretation([row(4.0), row(0.0)])
    assert half.startswith("ΔW is more aligned with W than random directions")  # one of two is not "only"
