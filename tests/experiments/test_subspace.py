"""Section 7 math on synthetic matrices whose answers are known by construction (no adapter files)."""

from __future__ import annotations

import math

import pytest
import torch

from experiments.subspace import (
    amplification,
    low_rank_svd,
    random_orthonormal,
    random_subspace_similarity,
    right_singular_vectors,
    subspace_similarity,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _a_with_rows_in(basis: torch.Tensor, r: int, seed: int) -> torch.Tensor:
    """A LoRA A (r x d) whose row space is the span of ``basis`` (d x r) columns, with distinct singular values."""
    mix = torch.randn(r, r, generator=_gen(seed), dtype=torch.float64)
    return mix @ basis.transpose(0, 1)


def test_right_singular_vectors_are_the_rows_of_vh_and_ignore_a_left_rotation() -> None:
    a = torch.randn(4, 20, generator=_gen(1), dtype=torch.float64)
    u_a = right_singular_vectors(a)
    assert u_a.shape == (20, 4)
    torch.testing.assert_close(u_a.T @ u_a, torch.eye(4, dtype=torch.float64))
    # A = U S Vh, so A^T A has eigenvectors Vh's rows with eigenvalues S^2 (descending).
    s = torch.linalg.svdvals(a)
    torch.testing.assert_close(a.T @ a @ u_a, u_a * s.square())
    # (Q A) = (Q U) S Vh: rotating A's rows (as training B's basis change would) keeps U_A: phi = 1 everywhere.
    q, _ = torch.linalg.qr(torch.randn(4, 4, generator=_gen(2), dtype=torch.float64))
    phi = subspace_similarity(u_a, right_singular_vectors(3.0 * q @ a))
    torch.testing.assert_close(phi, torch.ones(4, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"expected a LoRA A of shape \(r, d_in\) with r <= d_in, got \(20, 4\)"):
        right_singular_vectors(a.T)


def test_identical_subspaces_give_one_everywhere() -> None:
    u = random_orthonormal(30, 8, _gen(3))
    torch.testing.assert_close(subspace_similarity(u, u), torch.ones(8, 8, dtype=torch.float64))


def test_orthogonal_subspaces_give_zero() -> None:
    basis = random_orthonormal(30, 12, _gen(4))
    a1 = _a_with_rows_in(basis[:, :4], 4, seed=5)
    a2 = _a_with_rows_in(basis[:, 4:], 8, seed=6)
    phi = subspace_similarity(right_singular_vectors(a1), right_singular_vectors(a2))
    assert phi.shape == (4, 8)
    torch.testing.assert_close(phi, torch.zeros(4, 8, dtype=torch.float64), atol=1e-12, rtol=0)


def test_a_shared_top_direction_gives_phi_11_one_and_chance_level_elsewhere() -> None:
    d, r1, r2 = 512, 8, 16
    shared = random_orthonormal(d, 1, _gen(7))

    def a_with_top(seed: int, r: int) -> torch.Tensor:
        # A = diag(10, 1, 0.9, ...) [shared, random directions]^T: the shared direction is the top one.
        rest = random_orthonormal(d, r - 1, _gen(seed))
        rest = rest - shared @ (shared.T @ rest)
        basis = torch.cat([shared, torch.linalg.qr(rest)[0]], dim=1)
        scale = torch.tensor([10.0] + [1.0 - 0.05 * k for k in range(r - 1)], dtype=torch.float64)
        return scale.unsqueeze(1) * basis.T

    u1, u2 = right_singular_vectors(a_with_top(8, r1)), right_singular_vectors(a_with_top(9, r2))
    phi = subspace_similarity(u1, u2)
    assert phi[0, 0].item() == pytest.approx(1.0, abs=1e-9)
    # The other directions are independent random ones: their own phi is at the random-subspace level.
    rest = subspace_similarity(u1[:, 1:], u2[:, 1:])
    chance = random_subspace_similarity(d, r1 - 1, r2 - 1)
    assert rest.max().item() < 0.1
    assert 0.5 < (rest.mean() / chance.mean()).item() < 2.0
    # The shared direction is orthogonal to the rest in both, so ||U1_i^T U2_j||^2 = 1 + that of the rest:
    # beyond the top direction phi falls to (1 + chance) / min(i, j), about 1/8 at (8, 8).
    for i in range(2, r1 + 1):
        for j in range(2, r2 + 1):
            low = min(i, j)
            assert phi[i - 1, j - 1].item() == pytest.approx((1 + rest[i - 2, j - 2].item() * (low - 1)) / low)
    assert phi[0].tolist() == pytest.approx([1.0] * r2) and phi[:, 0].tolist() == pytest.approx([1.0] * r1)
    assert phi[7, 7].item() == pytest.approx(1 / 8, abs=0.03)


def test_random_subspace_baseline_matches_monte_carlo() -> None:
    d, k1, k2, draws = 16, 4, 6, 600
    gen = _gen(10)
    firsts, seconds = random_orthonormal(d, k1, gen, draws), random_orthonormal(d, k2, gen, draws)
    assert firsts.shape == (draws, d, k1)
    torch.testing.assert_close(firsts[5].T @ firsts[5], torch.eye(k1, dtype=torch.float64))
    total = sum(subspace_similarity(u, v) for u, v in zip(firsts, seconds, strict=True))
    expected = torch.tensor([[max(i, j) / d for j in range(1, k2 + 1)] for i in range(1, k1 + 1)])
    torch.testing.assert_close(random_subspace_similarity(d, k1, k2), expected.double())
    torch.testing.assert_close(total / draws, expected.double(), atol=0.02, rtol=0.1)
    with pytest.raises(ValueError, match=r"subspace dimensions must lie in 1..d=16, got 4 and 17"):
        random_subspace_similarity(16, 4, 17)


def test_low_rank_svd_is_the_thin_svd_of_the_product() -> None:
    b = torch.randn(24, 5, generator=_gen(11), dtype=torch.float64)
    a = torch.randn(5, 18, generator=_gen(12), dtype=torch.float64)
    u, s, v = low_rank_svd(b, a)
    dense = b @ a
    torch.testing.assert_close(u @ torch.diag(s) @ v.T, dense)
    torch.testing.assert_close(s, torch.linalg.svdvals(dense)[:5])
    torch.testing.assert_close(u.T @ u, torch.eye(5, dtype=torch.float64))
    torch.testing.assert_close(v.T @ v, torch.eye(5, dtype=torch.float64))
    u_dense, _, vh_dense = torch.linalg.svd(dense)
    # Same directions up to sign (the singular values are distinct).
    torch.testing.assert_close((u.T @ u_dense[:, :5]).abs(), torch.eye(5, dtype=torch.float64))
    torch.testing.assert_close((v.T @ vh_dense[:5].T).abs(), torch.eye(5, dtype=torch.float64))


W_SINGULAR = [10.0, 8.0, 6.0, 4.0, 3.0, 2.0, 1.0, 0.5, 0.25, 0.1]


def _w_with_known_spectrum() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    p = random_orthonormal(12, 10, _gen(13))
    q = random_orthonormal(10, 10, _gen(14))
    return p @ torch.diag(torch.tensor(W_SINGULAR, dtype=torch.float64)) @ q.T, p, q


@pytest.mark.parametrize(
    ("directions", "projected"),
    [([0, 1], math.hypot(10.0, 8.0)), ([8, 9], math.hypot(0.25, 0.1)), ([0, 9], math.hypot(10.0, 0.1))],
)
def test_amplification_of_a_delta_on_known_directions_of_w(directions: list[int], projected: float) -> None:
    w, p, q = _w_with_known_spectrum()
    # dW = 2 * B A = P_k diag(6, 2) Q_k^T: W's singular directions k, with ||dW||_F = sqrt(36 + 4).
    b = p[:, directions] * torch.tensor([3.0, 1.0], dtype=torch.float64)
    a = q[:, directions].T
    result = amplification(w, b, a, scaling=2.0, generator=_gen(15), draws=3)
    assert result.rank == 2
    assert result.norm_w == pytest.approx(math.sqrt(sum(s * s for s in W_SINGULAR)))
    assert result.norm_delta == pytest.approx(math.sqrt(40.0))
    assert result.proj_delta == pytest.approx(projected)
    assert result.proj_w == pytest.approx(math.hypot(10.0, 8.0))
    assert result.factor == pytest.approx(math.sqrt(40.0) / projected)


def test_random_directions_capture_the_expected_share_of_w() -> None:
    w, p, q = _w_with_known_spectrum()
    b, a = p[:, :3], q[:, :3].T
    result = amplification(w, b, a, scaling=1.0, generator=_gen(16), draws=3000)
    # E ||U^T W V||_F^2 = ||W||_F^2 (k / d_out)(k / d_in) for independent uniformly random U, V.
    expected = sum(s * s for s in W_SINGULAR) * (3 / 12) * (3 / 10)
    second_moment = result.proj_random**2 + result.proj_random_std**2
    assert second_moment == pytest.approx(expected, rel=0.05)
    assert result.proj_random < result.proj_delta  # dW sits on W's top-3 directions


def test_amplification_refuses_bad_input() -> None:
    w, p, q = _w_with_known_spectrum()
    with pytest.raises(ValueError, match=r"dW = B A is zero \(an untrained adapter has B = 0\)"):
        amplification(w, torch.zeros(12, 2), q[:, :2].T, 1.0, _gen())
    with pytest.raises(ValueError, match=r"does not have the shape of W \(12, 10\)"):
        amplification(w, p[:, :2].T, q[:, :2].T, 1.0, _gen())
    with pytest.raises(ValueError, match=r"rank must lie in 1..r=2, got 3"):
        amplification(w, p[:, :2], q[:, :2].T, 1.0, _gen(), rank=3)
