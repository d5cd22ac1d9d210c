"""Low-rank maths: deltas of every algorithm, the exact spectrum of a factored LoRA from its factors, and
a randomized SVD for everything else."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Factored:
    """delta = up @ down (scale folded in); 2-D views, plus the shape to restore (conv kernels)."""
    up: torch.Tensor       # (out, r)
    down: torch.Tensor     # (r, in * k * k)
    shape: tuple           # delta's full shape, (out, in) or (out, in, kh, kw)


def module_delta(parts: dict, module: str = "") -> torch.Tensor:
    """The full delta a module applies (before DoRA normalisation), in float32, scale included."""
    p = {k: v.float() for k, v in parts.items()}
    if "lora_up.weight" in p:
        f = lora_factors(parts)
        return (f.up @ f.down).reshape(f.shape)
    if "hada_w1_a" in p:
        m1 = p["hada_w1_a"] @ p["hada_w1_b"]
        m2 = p["hada_w2_a"] @ p["hada_w2_b"]
        scale = float(p["alpha"]) / p["hada_w1_b"].shape[0] if "alpha" in p else 1.0
        return m1 * m2 * scale   # 2-D (out, in*k*k): callers reshape when they know the layer
    if "lokr_w1" in p or "lokr_w1_a" in p:
        w1 = p["lokr_w1"] if "lokr_w1" in p else p["lokr_w1_a"] @ p["lokr_w1_b"]
        dim = None
        if "lokr_w2" in p:
            w2 = p["lokr_w2"]
        else:
            w2 = p["lokr_w2_a"] @ p["lokr_w2_b"]
            dim = p["lokr_w2_b"].shape[0]
        if "lokr_w1_b" in p:
            dim = p["lokr_w1_b"].shape[0]
        if w2.dim() == 4:
            w1 = w1[:, :, None, None]
        scale = float(p["alpha"]) / dim if ("alpha" in p and dim) else 1.0
        return torch.kron(w1, w2) * scale
    if "diff" in p:
        return p["diff"]
    raise ValueError(f"{module}: no delta in keys {sorted(parts)}")


def lora_factors(parts: dict) -> Factored:
    up, down = parts["lora_up.weight"].float(), parts["lora_down.weight"].float()
    rank = down.shape[0]
    scale = float(parts["alpha"]) / rank if "alpha" in parts else 1.0
    if "lora_mid.weight" in parts:
        raise ValueError("Tucker (lora_mid) LoCon layers are not supported by the exact path")
    out_dim = up.shape[0]
    shape = (out_dim, down.shape[1]) + tuple(down.shape[2:])
    return Factored(up.reshape(out_dim, rank) * scale, down.reshape(rank, -1), shape)


class FactoredSVD:
    """SVD of up @ down from the factors alone, O((m + n) r^2) instead of O(m n min(m, n)).

    up = Q1 R1 and down^T = Q2 R2 with R1, R2 the Cholesky factors of the r x r Gram matrices (two GEMMs,
    far cheaper than Householder QR on tall matrices); the SVD of the small core R1 R2^T gives the singular
    values, and the top-k singular vectors are formed only when asked: U_k = up R1^-1 u_k,
    V_k^T = vh_k R2^-T down. Falls back to QR when a factor is rank-deficient."""

    def __init__(self, f: Factored):
        self.f = f
        up, down = f.up, f.down
        g1 = (up.T @ up).double()
        g2 = (down @ down.T).double()
        try:
            r1 = torch.linalg.cholesky(g1).T          # up^T up = R1^T R1
            r2 = torch.linalg.cholesky(g2).T
            self.qr = False
        except RuntimeError:                          # rank-deficient: QR handles it
            q1, r1 = torch.linalg.qr(up.double())
            q2, r2 = torch.linalg.qr(down.double().T)
            self.q1, self.q2 = q1, q2
            self.qr = True
        self.r1, self.r2 = r1, r2
        self.u, self.s, self.vh = torch.linalg.svd(r1 @ r2.T)

    def top(self, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        u, vh = self.u[:, :k], self.vh[:k]
        if self.qr:
            return (self.q1 @ u).float(), self.s[:k].float(), (vh @ self.q2.T).float()
        left = torch.linalg.solve_triangular(self.r1, u, upper=True)          # R1^-1 u_k
        right = torch.linalg.solve_triangular(self.r2, vh.T, upper=True).T    # vh_k R2^-T
        return self.f.up @ left.float(), self.s[:k].float(), right.float() @ self.f.down


def factored_svd(f: Factored) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    svd = FactoredSVD(f)
    return svd.top(len(svd.s))


def randomized_svd(m: torch.Tensor, rank: int, oversample: int = 10, power_iters: int = 2,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Halko et al.: a Gaussian sketch of rank + oversample columns, power iterations (re-orthonormalised)
    for spectra that decay slowly, then an exact SVD of the small projected matrix."""
    m = m.float()
    rows, cols = m.shape
    k = min(rank + oversample, rows, cols)
    omega = torch.randn(cols, k, generator=generator, dtype=m.dtype)
    q, _ = torch.linalg.qr(m @ omega)
    for _ in range(power_iters):
        q, _ = torch.linalg.qr(m.T @ q)
        q, _ = torch.linalg.qr(m @ q)
    b = q.T @ m
    u, s, vh = torch.linalg.svd(b, full_matrices=False)
    return (q @ u)[:, :rank], s[:rank], vh[:rank]


def choose_rank(s: torch.Tensor, method: str, value: float, max_rank: int) -> int:
    """fixed: value is the rank; sv_ratio: keep s >= s_max / value; sv_fro: smallest rank keeping a
    `value` fraction of the Frobenius energy (sum of s^2); sv_cumulative: of the sum of s."""
    s = s.double()
    n = len(s)
    if method == "fixed":
        r = int(value)
    elif method == "sv_ratio":
        r = int((s >= s[0] / value).sum()) if s[0] > 0 else 1
    elif method in ("sv_fro", "sv_cumulative"):
        w = s ** 2 if method == "sv_fro" else s
        total = float(w.sum())
        if total <= 0:
            return 1
        cum = torch.cumsum(w, 0) / total
        r = int((cum < value - 1e-12).sum()) + 1
    else:
        raise ValueError(f"unknown rank method {method!r}; use fixed, sv_ratio, sv_fro or sv_cumulative")
    return max(1, min(r, n, max_rank))


def kept_energy(s: torch.Tensor, rank: int) -> float:
    s2 = s.double() ** 2
    total = float(s2.sum())
    return float(s2[:rank].sum()) / total if total > 0 else 1.0
