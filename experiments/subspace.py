"""The linear algebra of the paper's Section 7: subspace similarity (7.2) and amplification (7.3).

SVD convention (``torch.linalg.svd``): ``M = U diag(S) Vh`` with singular values in descending order;
the left-singular vectors of ``M`` are the columns of ``U``, the right-singular vectors the rows of
``Vh``. Every basis returned here is a (d, k) matrix with orthonormal columns, strongest direction first.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = [
    "Amplification",
    "amplification",
    "low_rank_svd",
    "projection_norm",
    "random_orthonormal",
    "random_subspace_similarity",
    "right_singular_vectors",
    "subspace_similarity",
]


def right_singular_vectors(a: torch.Tensor) -> torch.Tensor:
    """The paper's ``U_A`` for a LoRA ``A`` (r x d_in): its right-singular vectors as columns, (d_in, r).

    Section 7.2 compares adapters through the row space of ``A``, ordered by singular value.
    """
    if a.dim() != 2 or a.shape[0] > a.shape[1]:
        raise ValueError(f"expected a LoRA A of shape (r, d_in) with r <= d_in, got {tuple(a.shape)}")
    _, _, vh = torch.linalg.svd(a.double(), full_matrices=False)
    return vh.transpose(0, 1)


def low_rank_svd(b: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The thin SVD ``B A = U diag(S) V^T`` of a LoRA product without forming the (d_out x d_in) matrix.

    With ``B = Q_b R_b`` and ``A^T = Q_a R_a`` (QR), ``B A = Q_b (R_b R_a^T) Q_a^T``; the SVD of the r x r
    core gives the rest. Returns ``U`` (d_out, r), ``S`` (r,) and ``V`` (d_in, r), columns orthonormal.
    """
    if b.dim() != 2 or a.dim() != 2 or b.shape[1] != a.shape[0]:
        raise ValueError(f"B {tuple(b.shape)} and A {tuple(a.shape)} are not a LoRA pair (d_out, r) x (r, d_in)")
    q_b, r_b = torch.linalg.qr(b.double())
    q_a, r_a = torch.linalg.qr(a.double().transpose(0, 1))
    u_core, s, vh_core = torch.linalg.svd(r_b @ r_a.transpose(0, 1))
    return q_b @ u_core, s, q_a @ vh_core.transpose(0, 1)


def subspace_similarity(u1: torch.Tensor, u2: torch.Tensor) -> torch.Tensor:
    """phi(i, j) = ||U1[:, :i]^T U2[:, :j]||_F^2 / min(i, j) for all i <= k1, j <= k2 (paper eq. 4).

    1 means the span of the top-i directions of one contains that of the top-j of the other (or the
    reverse); 0 means they are orthogonal. Entry ``[i - 1, j - 1]`` holds phi(i, j).
    """
    if u1.dim() != 2 or u2.dim() != 2 or u1.shape[0] != u2.shape[0]:
        raise ValueError(f"bases must be (d, k) matrices of the same d, got {tuple(u1.shape)} and {tuple(u2.shape)}")
    squared = (u1.double().transpose(0, 1) @ u2.double()).square()
    # ||U1_i^T U2_j||_F^2 is the sum of the squared overlaps of the first i columns with the first j.
    overlap = squared.cumsum(0).cumsum(1)
    i = torch.arange(1, u1.shape[1] + 1, dtype=torch.float64).unsqueeze(1)
    j = torch.arange(1, u2.shape[1] + 1, dtype=torch.float64).unsqueeze(0)
    return overlap / torch.minimum(i, j)


def random_subspace_similarity(d: int, k1: int, k2: int) -> torch.Tensor:
    """E[phi(i, j)] for uniformly random subspaces of R^d: E||U_i^T V_j||_F^2 = i j / d, so max(i, j) / d.

    The chance level that a measured phi must exceed for a direction to count as shared.
    """
    if not 1 <= k1 <= d or not 1 <= k2 <= d:
        raise ValueError(f"subspace dimensions must lie in 1..d={d}, got {k1} and {k2}")
    i = torch.arange(1, k1 + 1, dtype=torch.float64).unsqueeze(1)
    j = torch.arange(1, k2 + 1, dtype=torch.float64).unsqueeze(0)
    return torch.maximum(i, j) / d


def random_orthonormal(d: int, k: int, generator: torch.Generator, draws: int | None = None) -> torch.Tensor:
    """A (d, k) basis of a uniformly random k-dimensional subspace, or ``draws`` of them as (draws, d, k).

    The column space of a Gaussian matrix is uniformly distributed, and QR gives an orthonormal basis of it.
    """
    shape = (d, k) if draws is None else (draws, d, k)
    q, _ = torch.linalg.qr(torch.randn(shape, generator=generator, dtype=torch.float64))
    return q


def projection_norm(w: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> float:
    """||U^T W V||_F: how much of ``W`` (d_out x d_in) lies in the subspaces spanned by ``U`` and ``V``.

    The paper writes ``U^T W V^T`` with its ``V`` holding right-singular vectors as rows (``Vh``); here
    ``V`` holds them as columns, which is the same number.
    """
    if u.shape[0] != w.shape[0] or v.shape[0] != w.shape[1]:
        raise ValueError(f"U {tuple(u.shape)} and V {tuple(v.shape)} do not fit W {tuple(w.shape)}")
    return float(torch.linalg.matrix_norm(u.double().transpose(0, 1) @ w.double() @ v.double()))


@dataclass(frozen=True)
class Amplification:
    """Table 7 for one adapted matrix: norms of W projected onto three r-dimensional subspaces."""

    rank: int
    norm_w: float  # ||W||_F
    norm_delta: float  # ||dW||_F
    proj_delta: float  # ||U^T W V||_F, U, V: dW's top-r singular directions
    proj_w: float  # the same with W's own top-r singular directions
    proj_random: float  # mean over draws of random orthonormal U, V
    proj_random_std: float
    random_draws: int

    @property
    def factor(self) -> float:
        """The paper's amplification factor ||dW||_F / ||U^T W V||_F (U, V from dW)."""
        return self.norm_delta / self.proj_delta if self.proj_delta > 0 else float("inf")


def amplification(
    w: torch.Tensor,
    b: torch.Tensor,
    a: torch.Tensor,
    scaling: float,
    generator: torch.Generator,
    draws: int = 10,
    rank: int | None = None,
) -> Amplification:
    """Section 7.3 for ``dW = scaling * B A`` adapting ``W`` (both d_out x d_in): does dW amplify W's directions?

    ``rank`` (default: the LoRA rank r) is the dimension of the subspaces W is projected onto.
    """
    d_out, d_in = w.shape
    if b.shape[0] != d_out or a.shape[1] != d_in:
        raise ValueError(f"dW = B {tuple(b.shape)} A {tuple(a.shape)} does not have the shape of W {tuple(w.shape)}")
    k = b.shape[1] if rank is None else rank
    if not 1 <= k <= b.shape[1]:
        raise ValueError(f"rank must lie in 1..r={b.shape[1]}, got {k}")
    if draws < 1:
        raise ValueError(f"draws must be at least 1, got {draws}")
    u, s, v = low_rank_svd(b, a)
    if float(s[0]) == 0.0:
        raise ValueError("dW = B A is zero (an untrained adapter has B = 0), so it has no singular directions")
    w = w.double()
    singular_w = torch.linalg.svdvals(w)
    u_random = random_orthonormal(d_out, k, generator, draws)
    v_random = random_orthonormal(d_in, k, generator, draws)
    random = torch.linalg.matrix_norm(u_random.transpose(1, 2) @ w @ v_random)
    return Amplification(
        rank=k,
        norm_w=float(torch.linalg.matrix_norm(w)),
        norm_delta=abs(scaling) * float(s.square().sum().sqrt()),
        proj_delta=projection_norm(w, u[:, :k], v[:, :k]),
        # U_W^T W V_W = diag(top-k singular values of W), whose norm needs no projection.
        proj_w=float(singular_w[:k].square().sum().sqrt()),
        proj_random=float(random.mean()),
        proj_random_std=float(random.std()) if draws > 1 else 0.0,
        random_draws=draws,
    )
