"""Figures of the Section 7 analyses (matplotlib, Agg backend), each written atomically as a PNG."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from experiments.atomic import atomic_write

__all__ = ["plot_amplification", "plot_phi_grid", "plot_phi_summary"]

PHI_LABEL = r"$\phi(i,j) = \|U_i^\top V_j\|_F^2 \,/\, \min(i,j)$"


def _save(fig: Any, path: Path) -> Path:
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))
    plt.close(fig)
    return path


def _index_ticks(n: int) -> list[int]:
    """1 (the top direction, the one that matters most) and evenly spaced indices up to ``n``."""
    step = 1 if n <= 10 else 2 if n <= 20 else -(-n // 8)
    return sorted({1, *range(step, n + 1, step)})


def plot_phi_grid(phi: Sequence[Sequence[float]], title: str, ylabel: str, xlabel: str, path: Path) -> Path:
    """One heatmap of phi(i, j) as in the paper's Figure 3: i down the rows, j across the columns."""
    rows, cols = len(phi), len(phi[0])
    width = min(12.0, max(4.5, 2.5 + 0.12 * cols))
    height = min(7.0, max(2.8, 1.6 + 0.12 * rows))
    fig, ax = plt.subplots(figsize=(width, height))
    image = ax.imshow(
        phi, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto", interpolation="nearest",
        extent=(0.5, cols + 0.5, rows + 0.5, 0.5),
    )  # fmt: skip
    ax.set_xticks(_index_ticks(cols))
    ax.set_yticks(_index_ticks(rows))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, label=PHI_LABEL)
    return _save(fig, path)


def _x_positions(rows: Sequence[Mapping[str, Any]]) -> tuple[list[int], str]:
    """Layer indices on the x axis, or the matrices' order where module names carry no index."""
    if all(row["layer"] is not None for row in rows):
        return [int(row["layer"]) for row in rows], "layer"
    return list(range(len(rows))), "matrix (adapter order)"


def _by_matrix(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["matrix"], []).append(row)
    return groups


def plot_phi_summary(rows: Sequence[Mapping[str, Any]], top: int, title: str, path: Path) -> Path:
    """phi(1, 1) and the mean phi over i, j <= ``top`` per layer, one line per matrix, beside chance."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    panels = (
        ("phi_1_1", "phi_random_1_1", r"top direction: $\phi(1,1)$"),
        ("mean_phi_top", "mean_phi_random_top", rf"mean $\phi(i,j)$ over $i,j \leq {top}$"),
    )
    for ax, (key, chance, label) in zip(axes, panels, strict=True):
        for n, (matrix, group) in enumerate(_by_matrix(rows).items()):
            xs, xlabel = _x_positions(group)
            colour = f"C{n}"
            ax.plot(xs, [row[key] for row in group], "o-", color=colour, label=f"{matrix}")
            ax.plot(xs, [row[chance] for row in group], ":", color=colour, label=f"{matrix}, random subspaces")
        ax.set_xlabel(xlabel)
        ax.set_title(label, fontsize=10)
        ax.set_ylim(0.0, 1.05)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(r"$\phi$ (1 = same subspace, 0 = orthogonal)")
    axes[1].legend(fontsize=8, loc="best")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_amplification(rows: Sequence[Mapping[str, Any]], title: str, path: Path) -> Path:
    """Per layer: ||U^T W V||_F for dW's, W's and random directions (log scale), and the amplification factor."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    styles = ("o-", "s--", "^-.", "d:")
    kinds = (("proj_W", "C0", "W top-r"), ("proj_dW", "C3", "ΔW top-r"), ("proj_random", "C7", "random"))
    for n, (matrix, group) in enumerate(_by_matrix(rows).items()):
        xs, xlabel = _x_positions(group)
        style = styles[n % len(styles)]
        for key, colour, what in kinds:
            left.plot(xs, [row[key] for row in group], style, color=colour, label=f"{matrix}: {what}")
        right.plot(xs, [row["amplification"] for row in group], style, color="k", label=matrix)
        left.set_xlabel(xlabel)
        right.set_xlabel(xlabel)
    left.set_yscale("log")
    left.set_ylabel(r"$\|U^\top W V\|_F$")
    ranks = ", ".join(str(r) for r in sorted({row["r"] for row in rows}))
    left.set_title(f"W projected onto r-dim subspaces (r = {ranks}) of W, ΔW and random directions", fontsize=9)
    left.legend(fontsize=7, loc="best")
    right.set_ylabel(r"$\|\Delta W\|_F \,/\, \|U^\top W V\|_F$  (U, V from $\Delta W$)")
    right.set_title("amplification factor", fontsize=9)
    right.legend(fontsize=8, loc="best")
    for ax in (left, right):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)
