"""Low-rank maths: the exact spectrum of a factored LoRA from its factors, and
a randomized SVD for everything else."""
from __future__ import annotations

import torch

from ..lora.algorithms import Factored


class FactoredSVD:
    """SVD of up @ down from the factors alone, O((m + n) r^2) instead of O(m n min(m, n)).

    up = Q1 R1 with R1 the Cholesky factor of the r x r Gram matrix up^T up (one GEMM, far cheaper than
    Householder QR of a tall matrix), so up @ down = Q1 (R1 down) and its singular values are those of the
    r x n matrix R1 down: the square roots of the eigenvalues of the r x r matrix R1 (down down^T) R1^T (a
    symmetric eigensolve, about 3x faster than an SVD at r = 128). The top-k vectors are formed only when
    asked: U_k = up R1^-1 u_k, V_k^T = s_k^-1 u_k^T R1 down. Squaring costs precision only in singular values
    below ~1e-8 of the largest, which no rank choice keeps. Falls back to QR when up is rank-deficient."""

    def __init__(self, f: Factored):
        self.f = f
        up, down = f.up, f.down
        g1 = (up.T @ up).double()
        r1, info = torch.linalg.cholesky_ex(g1, upper=True)          # up^T up = R1^T R1
        self.qr = int(info) != 0
        if self.qr:                                   # rank-deficient up: QR handles it
            q1, r1 = torch.linalg.qr(up.double())
            q2, r2 = torch.linalg.qr(down.double().T)
            self.q1, self.q2 = q1, q2
            self.u, self.s, self.vh = torch.linalg.svd(r1 @ r2.T)
            return
        g2 = (down @ down.T).double()
        evals, evecs = torch.linalg.eigh(r1 @ g2 @ r1.T)
        self.r1 = r1
        self.u = evecs.flip(1)                        # eigh is ascending; singular values descend
        self.s = evals.flip(0).clamp_min(0).sqrt()

    def top(self, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        u = self.u[:, :k]
        if self.qr:
            return (self.q1 @ u).float(), self.s[:k].float(), (self.vh[:k] @ self.q2.T).float()
        s = self.s[:k]
        left = torch.linalg.solve_triangular(self.r1, u, upper=True)           # R1^-1 u_k
        inv = torch.where(s > 0, 1.0 / s.clamp_min(1e-300), torch.zeros_like(s))
        right = (u.T @ self.r1) * inv[:, None]                                  # s_k^-1 u_k^T R1
        return self.f.up @ left.float(), s.float(), right.float() @ self.f.down


def factored_svd(f: Factored) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    svd = FactoredSVD(f)
    return svd.top(len(svd.s))


def orthonormal_basis(y: torch.Tensor) -> torch.Tensor:
    """An orthonormal basis of y's columns. CholeskyQR2 (two rounds of Gram -> Cholesky -> triangular solve)
    is all GEMMs, several times faster on CPU than Householder QR of a tall thin matrix; Householder QR is
    the fallback when the Gram matrix is too ill-conditioned for Cholesky."""
    q = y
    for _ in range(2):
        gram = q.double().T @ q.double()
        r, info = torch.linalg.cholesky_ex(gram, upper=True)
        if int(info) != 0 or not bool(torch.isfinite(r).all()):
            return torch.linalg.qr(y)[0]
        q = torch.linalg.solve_triangular(r.to(q.dtype), q, upper=True, left=False)
    return q


def randomized_svd(m: torch.Tensor, rank: int, oversample: int = 10, power_iters: int = 2,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Halko, Martinsson & Tropp: a Gaussian sketch of rank + oversample columns, power iterations
    (re-orthonormalised each half-step) for spectra that decay slowly, then an exact SVD of the small
    projected matrix."""
    m = m.float()
    rows, cols = m.shape
    k = min(rank + oversample, rows, cols)
    if k >= min(rows, cols) // 2:          # the sketch is no smaller than the matrix: a full SVD is cheaper
        u, s, vh = torch.linalg.svd(m, full_matrices=False)
        return u[:, :rank], s[:rank], vh[:rank]
    omega = torch.randn(cols, k, generator=generator, dtype=m.dtype)
    q = orthonormal_basis(m @ omega)
    for _ in range(power_iters):
        q = orthonormal_basis(m.T @ q)
        q = orthonormal_basis(m @ q)
    b = q.T @ m
    u, s, vh = torch.linalg.svd(b, full_matrices=False)
    return (q @ u)[:, :rank], s[:rank], vh[:rank]


def choose_rank(s: torch.Tensor, method: str, value: float, max_rank: int, total_energy: float | None = None) -> int:
    """fixed: value is the rank; sv_ratio: keep s >= s_max / value; sv_fro: smallest rank keeping a
    `value` fraction of the Frobenius energy (sum of s^2; pass total_energy = ||delta||_F^2 when s is a
    truncated spectrum); sv_cumulative: of the sum of s (needs the whole spectrum)."""
    s = s.double()
    n = len(s)
    if method == "fixed":
        r = int(value)
    elif method == "sv_ratio":
        r = int((s >= s[0] / value).sum()) if s[0] > 0 else 1
    elif method in ("sv_fro", "sv_cumulative"):
        w = s ** 2 if method == "sv_fro" else s
        total = float(w.sum()) if total_energy is None or method != "sv_fro" else max(total_energy, float(w.sum()))
        if total <= 0:
            return 1
        cum = torch.cumsum(w, 0) / total
        r = int((cum < value - 1e-12).sum()) + 1
    else:
        raise ValueError(f"unknown rank method {method!r}; use fixed, sv_ratio, sv_fro or sv_cumulative")
    return max(1, min(r, n, max_rank))


def kept_energy(s: torch.Tensor, rank: int, total_energy: float | None = None) -> float:
    s2 = s.double() ** 2
    total = float(s2.sum()) if total_energy is None else max(total_energy, float(s2.sum()))
    return float(s2[:rank].sum()) / total if total > 0 else 1.0
