"""The paper's Section 7 analyses of trained adapters, as commands.

    python -m experiments.analysis subspace RUN_A RUN_B [--basis A|dW_left|dW_right] [--matrices Wq Wv] [--top 8]
    python -m experiments.analysis amplification RUN [--base roberta-base] [--draws 10] [--rank R]
    python -m experiments.analysis pair RUN_A RUN_B [--base ...]    # both analyses (``make analysis``)

A RUN is a LoRA run directory of the GLUE/E2E runners, an adapter directory, or a folder holding one run
(``--seed K`` picks ``seed<K>`` among several). Each analysis writes CSV tables, PNG figures and an
``analysis.json`` (kind, title, model, task, summary_markdown, figures, tables) to
``runs/analysis/<name>/`` (beside the runs, git-ignored) or ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from experiments.adapted_matrices import (
    AdaptedMatrix,
    AdapterSource,
    AnalysisInputError,
    frozen_weights,
    pair_matrices,
    read_source,
    select_matrices,
)
from experiments.analysis_plots import plot_amplification, plot_phi_grid, plot_phi_summary
from experiments.atomic import atomic_write, write_json_atomic
from experiments.fingerprints import sha256_file
from experiments.results import LOCAL_MARKER, portable_path
from experiments.subspace import (
    amplification,
    low_rank_svd,
    random_subspace_similarity,
    right_singular_vectors,
    subspace_similarity,
)
from lora.adapter import TENSORS_FILE
from lora.errors import AdapterMismatchError

__all__ = ["ANALYSIS_FILE", "BASES", "amplification_analysis", "main", "subspace_analysis"]

ANALYSIS_FILE = "analysis.json"
SCHEMA_VERSION = 1
DEFAULT_ROOT = Path("runs/analysis")
BASES = {
    "A": "right-singular vectors of A",
    "dW_left": "left-singular vectors of ΔW = BA",
    "dW_right": "right-singular vectors of ΔW = BA",
}


# -- shared helpers ----------------------------------------------------------------------------


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


def _input_record(source: AdapterSource) -> dict[str, str]:
    """An adapter as analysis.json names it: its path, relative when it lies below the working directory, else
    ``<local>/`` and its run folder's last parts, so no machine path is shared; and the digest of its weights,
    which identifies it wherever it is copied."""
    path, cwd = Path(os.path.abspath(source.path)), Path(os.path.abspath(Path.cwd()))
    below_cwd = path != cwd and cwd != Path(cwd.anchor) and path.is_relative_to(cwd)
    shown = path.relative_to(cwd).as_posix() if below_cwd else f"{LOCAL_MARKER}/{'/'.join(path.parts[1:][-4:])}"
    return {"path": shown, "sha256": sha256_file(path / TENSORS_FILE)}


def _joined(values: Sequence[str | None]) -> str | None:
    distinct = list(dict.fromkeys(v for v in values if v))
    return " vs ".join(distinct) if distinct else None


def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    text = buffer.getvalue()
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _by_matrix(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["matrix"], []).append(row)
    return groups


def _write_analysis(out: Path, document: dict[str, Any]) -> dict[str, Any]:
    """Write ``analysis.json`` last, so its presence means every file it lists is complete."""
    document = {
        "schema_version": SCHEMA_VERSION,
        **document,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_json_atomic(out / ANALYSIS_FILE, document)
    return document


def _labels(first: AdapterSource, second: AdapterSource) -> tuple[str, str]:
    """Distinct display names for two adapters (rank and seed, then task, then position)."""
    one, other = first.label, second.label
    if one == other and first.task != second.task:
        one, other = f"{first.task} {one}", f"{second.task} {other}"
    if one == other:
        one, other = f"{one} (1st)", f"{other} (2nd)"
    return one, other


# -- subspace similarity (Section 7.2) -------------------------------------------------------------


def _basis(matrix: AdaptedMatrix, basis: str) -> torch.Tensor:
    if basis == "A":
        return right_singular_vectors(matrix.a)
    u, s, v = low_rank_svd(matrix.b, matrix.a)
    if float(s[0]) == 0.0:
        raise AnalysisInputError(
            f"{matrix.label} ({matrix.key}): ΔW = BA is zero (B = 0, an untrained adapter), so it has no singular "
            "directions; use --basis A"
        )
    return u if basis == "dW_left" else v


def _subspace_interpretation(rows: Sequence[Mapping[str, Any]], top: int) -> str:
    phi11 = [row["phi_1_1"] for row in rows]
    chance11 = _mean([row["phi_random_1_1"] for row in rows])
    mean_top = _mean([row["mean_phi_top"] for row in rows])
    chance_top = _mean([row["mean_phi_random_top"] for row in rows])
    level = _mean(phi11)
    if level >= 0.5:
        verdict = "The top direction is shared"
    elif level >= 5 * chance11:
        verdict = "The top direction is partly shared"
    else:
        verdict = "The top directions overlap no more than random ones"
    return (
        f"{verdict}: φ(1,1) averages {level:.2f} over {len(rows)} matrices (range {min(phi11):.2f}–{max(phi11):.2f}) "
        f"against {chance11:.3f} for random directions, while over i, j ≤ {top} φ averages {mean_top:.2f} "
        f"against {chance_top:.3f} at random."
    )


def subspace_analysis(
    first: AdapterSource,
    second: AdapterSource,
    out: Path,
    *,
    basis: str = "A",
    matrices: Sequence[str] | None = None,
    top: int = 8,
) -> dict[str, Any]:
    """Section 7.2 (Figures 3-4): how much the top-i directions of one adapter span those of another."""
    if basis not in BASES:
        raise AnalysisInputError(f"basis must be one of {', '.join(BASES)}, got {basis!r}")
    if top < 1:
        raise AnalysisInputError(f"top must be at least 1, got {top}")
    pairs = pair_matrices(first, second, matrices)
    name1, name2 = _labels(first, second)
    out = Path(out)
    grid_rows: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    grid_figures: list[str] = []
    by_label = len({one.label for one, _ in pairs}) == len(pairs)
    for one, other in pairs:
        u1, u2 = _basis(one, basis), _basis(other, basis)
        phi = subspace_similarity(u1, u2)
        chance = random_subspace_similarity(u1.shape[0], u1.shape[1], u2.shape[1])
        k1, k2 = min(top, u1.shape[1]), min(top, u2.shape[1])
        common = {"layer": one.layer, "matrix": one.matrix, "module": one.key}
        rows.append(
            {
                **common,
                "d": u1.shape[0],
                "r1": u1.shape[1],
                "r2": u2.shape[1],
                "phi_1_1": float(phi[0, 0]),
                "phi_random_1_1": float(chance[0, 0]),
                "top_i": k1,
                "top_j": k2,
                "mean_phi_top": float(phi[:k1, :k2].mean()),
                "mean_phi_random_top": float(chance[:k1, :k2].mean()),
            }
        )
        grid_rows += [
            {**common, "i": i + 1, "j": j + 1, "phi": float(phi[i, j]), "phi_random": float(chance[i, j])}
            for i in range(phi.shape[0])
            for j in range(phi.shape[1])
        ]
        figure = Path("figures") / f"phi_{_slug(one.label if by_label else one.key)}.png"
        plot_phi_grid(
            phi.tolist(),
            f"{one.label} ({one.key}): {name1} vs {name2}\nbasis: {BASES[basis]}",
            f"i: top-i directions of {name1} (r={u1.shape[1]})",
            f"j: top-j directions of {name2} (r={u2.shape[1]})",
            out / figure,
        )
        grid_figures.append(figure.as_posix())
    title = f"Subspace similarity (Section 7.2): {name1} vs {name2}, {BASES[basis]}"
    plot_phi_summary(rows, top, title, out / "phi_summary.png")
    _write_csv(out / "phi_summary.csv", rows)
    _write_csv(out / "phi_grid.csv", grid_rows)

    header = ["layer", "matrix", "r₁", "r₂", "φ(1,1)", "random", f"mean φ, i,j ≤ {top}", "random"]
    summary_keys = ("phi_1_1", "phi_random_1_1", "mean_phi_top", "mean_phi_random_top")
    table = [[row["layer"], row["matrix"], row["r1"], row["r2"], *(row[k] for k in summary_keys)] for row in rows]
    for matrix, group in _by_matrix(rows).items():
        table.append(["**mean**", matrix, "", "", *(_mean([row[k] for row in group]) for k in summary_keys)])
    interpretation = _subspace_interpretation(rows, top)
    markdown = (
        f"Normalised subspace similarity φ(i, j) = ‖U_iᵀ V_j‖²_F / min(i, j) between the top-i directions of "
        f"{name1} and the top-j of {name2} ({BASES[basis]}); random subspaces give max(i, j)/d.\n\n"
        f"{_markdown_table(header, table)}\n\n{interpretation}\n"
    )
    return _write_analysis(
        out,
        {
            "kind": "subspace_similarity",
            "title": title,
            "model": _joined([first.model, second.model]),
            "task": _joined([first.task, second.task]),
            "summary_markdown": markdown,
            "figures": ["phi_summary.png", *grid_figures],
            "tables": ["phi_summary.csv", "phi_grid.csv"],
            "inputs": [_input_record(first), _input_record(second)],
            "settings": {"basis": basis, "matrices": list(matrices) if matrices else None, "top": top},
            "summary": {
                "labels": [name1, name2],
                "mean_phi_1_1": _mean([row["phi_1_1"] for row in rows]),
                "mean_phi_random_1_1": _mean([row["phi_random_1_1"] for row in rows]),
                "mean_phi_top": _mean([row["mean_phi_top"] for row in rows]),
                "mean_phi_random_top": _mean([row["mean_phi_random_top"] for row in rows]),
                "interpretation": interpretation,
            },
        },
    )


# -- amplification (Section 7.3) ------------------------------------------------------------------


def _amplification_interpretation(rows: Sequence[Mapping[str, Any]]) -> str:
    """One sentence on how ΔW relates to W. A matrix counts as aligned beyond chance only where W's projection on
    ΔW's subspace exceeds the random draws' mean by more than three of their standard deviations."""
    delta, own, random = (_mean([row[k] for row in rows]) for k in ("proj_dW", "proj_W", "proj_random"))
    factor = _mean([row["amplification"] for row in rows])
    beyond = sum(row["proj_dW"] > row["proj_random"] + 3 * row["proj_random_std"] for row in rows)
    if 2 * beyond < len(rows):
        verdict = f"ΔW is aligned with W beyond chance in only {beyond} of {len(rows)} matrices"
    elif delta >= 0.5 * own:
        verdict = "ΔW mostly reinforces W's own top directions"
    elif delta < 2 * random:
        verdict = "ΔW is more aligned with W than random directions, but only slightly"
    else:
        verdict = "ΔW amplifies directions that W does not emphasise"
    return (
        f"{verdict}: W projected onto ΔW's top-r subspace has norm {delta:.3g} on average, {delta / random:.1f}× "
        f"that of random directions ({random:.3g}; beyond 3 s.d. of the random draws in {beyond} of {len(rows)} "
        f"matrices) and {delta / own:.2f}× that of W's top-r directions ({own:.3g}); the mean amplification "
        f"factor ‖ΔW‖_F / ‖UᵀWV‖_F is {factor:.3g}."
    )


def _check_draws(draws: int) -> None:
    if draws < 2:
        raise AnalysisInputError(
            f"--draws={draws} is too few: the verdict weighs ΔW against the spread of random draws; use 2 or more"
        )


def amplification_analysis(
    source: AdapterSource,
    out: Path,
    *,
    base: str | None = None,
    matrices: Sequence[str] | None = None,
    draws: int = 10,
    draw_seed: int = 0,
    rank: int | None = None,
) -> dict[str, Any]:
    """Section 7.3 (Table 7): how strongly ΔW correlates with W, and how much it amplifies what it picks."""
    _check_draws(draws)
    chosen = select_matrices(source, matrices)
    base = base or source.base_model
    if not base:
        raise AnalysisInputError(
            f"the adapter in {source.path} records no base model; pass its name or folder with --base"
        )
    weights = frozen_weights(base, chosen)
    generator = torch.Generator().manual_seed(draw_seed)
    rows: list[dict[str, Any]] = []
    for matrix in chosen:
        try:
            result = amplification(weights[matrix.key], matrix.b, matrix.a, matrix.scaling, generator, draws, rank)
        except ValueError as error:
            raise AnalysisInputError(f"{matrix.label} ({matrix.key}) of {source.path}: {error}") from None
        rows.append(
            {
                "layer": matrix.layer,
                "matrix": matrix.matrix,
                "module": matrix.key,
                "r": result.rank,
                "d_out": matrix.d_out,
                "d_in": matrix.d_in,
                "norm_W": result.norm_w,
                "norm_dW": result.norm_delta,
                "proj_dW": result.proj_delta,
                "proj_W": result.proj_w,
                "proj_random": result.proj_random,
                "proj_random_std": result.proj_random_std,
                "amplification": result.factor,
            }
        )
    out = Path(out)
    title = f"Amplification (Section 7.3): {source.label} on {portable_path(str(base))}"
    plot_amplification(rows, title, out / "amplification.png")
    _write_csv(out / "amplification.csv", rows)

    keys = ("norm_W", "norm_dW", "proj_dW", "proj_W", "proj_random", "amplification")
    header = ["layer", "matrix", "r", "‖W‖_F", "‖ΔW‖_F", "‖UᵀWVᵀ‖_F ΔW", "W top-r", "random", "‖ΔW‖/‖UᵀWVᵀ‖ (ΔW)"]
    table = [[row["layer"], row["matrix"], row["r"], *(row[k] for k in keys)] for row in rows]
    for matrix, group in _by_matrix(rows).items():
        table.append(["**mean**", matrix, "", *(_mean([row[k] for row in group]) for k in keys)])
    interpretation = _amplification_interpretation(rows)
    markdown = (
        "‖UᵀWVᵀ‖_F: the frozen W projected onto the r-dimensional subspaces given by the top-r singular vectors "
        f"U, V of ΔW, of W itself, or random ones (mean of {draws} draws), as in the paper's Table 7.\n\n"
        f"{_markdown_table(header, table)}\n\n{interpretation}\n"
    )
    return _write_analysis(
        out,
        {
            "kind": "amplification",
            "title": title,
            "model": source.model,
            "task": source.task,
            "summary_markdown": markdown,
            "figures": ["amplification.png"],
            "tables": ["amplification.csv"],
            "inputs": [_input_record(source)],
            "settings": {
                "base": portable_path(str(base)),
                "matrices": list(matrices) if matrices else None,
                "draws": draws,
                "draw_seed": draw_seed,
                "rank": rank,
            },
            "summary": {
                "label": source.label,
                **{f"mean_{k}": _mean([row[k] for row in rows]) for k in keys},
                "interpretation": interpretation,
            },
        },
    )


# -- command line -----------------------------------------------------------------------------------


def _default_name(sources: Sequence[AdapterSource], what: str) -> str:
    first = sources[0]
    labels = "-vs-".join(_labels(*sources)) if len(sources) == 2 else first.label
    return _slug("-".join(part for part in (first.model, first.task, what, labels) if part))


def _out(args: argparse.Namespace, sources: Sequence[AdapterSource], what: str) -> Path:
    if args.out:
        return Path(args.out)
    return Path(args.root) / (args.name or _default_name(sources, what))


def _report(document: Mapping[str, Any], out: Path) -> None:
    print(f"== {document['title']}\n{document['summary_markdown']}\nwritten to {out / ANALYSIS_FILE}", flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--matrices", nargs="+", help="paper names (Wq Wv ...) or module names; default all")
    common.add_argument("--seed", type=int, help="use the seed<K> run of each path (needed where a path holds several)")
    common.add_argument("--out", help="output directory (default ROOT/NAME)")
    common.add_argument("--root", default=str(DEFAULT_ROOT), help="where named analyses go (%(default)s)")
    common.add_argument("--name", help="output folder name under ROOT (default: model-task-analysis-labels)")
    two = argparse.ArgumentParser(add_help=False)
    two.add_argument("first", help="run directory, adapter directory, or a folder holding one run")
    two.add_argument("second", help="the adapter to compare with (same base model and layers)")
    two.add_argument("--basis", choices=list(BASES), default="A", help="whose singular vectors (default A)")
    two.add_argument("--top", type=int, default=8, help="i, j range of the summary mean (default 8)")
    amp = argparse.ArgumentParser(add_help=False)
    amp.add_argument("--base", help="base model name or folder (default: the one the run recorded)")
    amp.add_argument("--draws", type=int, default=10, help="random subspaces averaged (default 10)")
    amp.add_argument("--draw-seed", type=int, default=0, help="seed of the random subspaces (default 0)")
    amp.add_argument("--rank", type=int, help="subspace dimension (default: each layer's r)")
    commands.add_parser("subspace", parents=[common, two], help="subspace similarity of two adapters (7.2)")
    single = commands.add_parser("amplification", parents=[common, amp], help="amplification of one adapter (7.3)")
    single.add_argument("run", help="run directory, adapter directory, or a folder holding one run")
    commands.add_parser("pair", parents=[common, two, amp], help="both analyses for two runs (make analysis)")
    return parser


def main(argv: list[str] | None = None) -> None:
    """Run one analysis (or both, for ``pair``) and print its summary."""
    args = _parser().parse_args(argv)
    try:
        if args.command != "subspace":
            _check_draws(args.draws)  # before any adapter is read or analysis written
        if args.command == "amplification":
            source = read_source(args.run, args.seed)
            out = _out(args, [source], "amplification")
            document = amplification_analysis(
                source, out, base=args.base, matrices=args.matrices, draws=args.draws,
                draw_seed=args.draw_seed, rank=args.rank,
            )  # fmt: skip
            _report(document, out)
            return
        first, second = read_source(args.first, args.seed), read_source(args.second, args.seed)
        out = _out(args, [first, second], "subspace" if args.command == "subspace" else "")
        subspace_out = out if args.command == "subspace" else out / "subspace_similarity"
        document = subspace_analysis(
            first, second, subspace_out, basis=args.basis, matrices=args.matrices, top=args.top
        )
        _report(document, subspace_out)
        if args.command == "pair":
            for source, label in zip((first, second), _labels(first, second), strict=True):
                target = out / f"amplification_{_slug(label)}"
                document = amplification_analysis(
                    source, target, base=args.base, matrices=args.matrices, draws=args.draws,
                    draw_seed=args.draw_seed, rank=args.rank,
                )  # fmt: skip
                _report(document, target)
    except (AnalysisInputError, AdapterMismatchError) as error:  # the message says what to fix
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    main()
