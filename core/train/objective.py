"""The denoising objective for every model family, expressed through the host's model sampling.

The host's ``apply_model`` returns the denoised prediction x0_hat. For eps, v and flow models the native
target residual is a per-sigma scaling of (x0_hat - x0), so one code path trains them all with the loss
each family is normally trained with (kohya's eps/v losses, the flow-matching velocity loss):
  eps:  eps_hat - eps = (x0 - x0_hat) / sigma
  flow: v_hat - v     = (x0 - x0_hat) / sigma
  v:    v_hat - v     = (x0 - x0_hat) * sqrt(sigma^2 + sd^2) / (sigma * sd)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..fields import setting

KINDS = ("eps", "v", "flow", "x0")
LOSSES = ("l2", "l1", "huber", "smooth_l1")


@dataclass(frozen=True)
class ObjectiveSpec:
    loss: str = setting("l2", "Loss on the model's native target (eps, v or flow velocity).")
    huber_c: float = setting(0.1, "Huber / smooth-L1 threshold.", min=0.0, max=10.0, step=0.01)
    min_snr_gamma: float = setting(0.0, "Min-SNR weighting gamma (5 is usual); 0 turns it off.",
                                   min=0.0, max=20.0, step=0.5)
    debiased_estimation: bool = setting(False, "Weight the loss by 1/sqrt(SNR) (debiased estimation).")
    noise_offset: float = setting(0.0, "Noise offset (0.05-0.1 helps very dark/bright images).",
                                  min=0.0, max=1.0, step=0.01)
    multires_noise_iterations: int = setting(0, "Multi-resolution (pyramid) noise iterations; 0 off, 6 usual.",
                                             min=0, max=10)
    multires_noise_discount: float = setting(0.3, "Discount per pyramid level.", min=0.0, max=1.0, step=0.05)
    min_timestep: float = setting(0.0, "Lowest noise level trained, as a fraction of the schedule.",
                                  min=0.0, max=1.0, step=0.01)
    max_timestep: float = setting(1.0, "Highest noise level trained, as a fraction of the schedule.",
                                  min=0.0, max=1.0, step=0.01)
    # "uniform" for flow families lets the host's model_sampling apply the family's shift (kohya/musubi's
    # "shift"); "logit_normal" is SD3's t = sigmoid(N(logit_mean, logit_std)); "sigmoid" is kohya's
    # sigmoid(scale * N(0, 1)); "auto" is host.families.TIMESTEP_SAMPLING.
    timestep_sampling: str = setting(
        "auto", "How noise levels are drawn: auto = the model family's default (SD3 logit-normal, Flux/Chroma/FLUX.2 "
        "sigmoid, others uniform; flow families get their shift from the model), uniform, logit_normal, sigmoid.")
    logit_mean: float = setting(0.0, "logit_normal/sigmoid: mean of the normal draw (positive trains noisier).",
                                min=-5.0, max=5.0, step=0.05)
    logit_std: float = setting(1.0, "logit_normal/sigmoid: spread of the normal draw (kohya's sigmoid_scale).",
                               min=0.01, max=5.0, step=0.05)


def residual_scale(kind: str, sigma: torch.Tensor, sigma_data: float = 1.0) -> torch.Tensor:
    sigma = sigma.clamp_min(1e-5)
    if kind in ("eps", "flow"):
        return 1.0 / sigma
    if kind == "v":
        return torch.sqrt(sigma ** 2 + sigma_data ** 2) / (sigma * sigma_data)
    if kind == "x0":
        return torch.ones_like(sigma)
    raise ValueError(f"unknown model kind {kind!r}; expected one of {KINDS}")


def snr(kind: str, sigma: torch.Tensor, sigma_data: float = 1.0) -> torch.Tensor:
    sigma = sigma.clamp_min(1e-5)
    if kind == "flow":
        return ((1.0 - sigma).clamp_min(1e-5) / sigma) ** 2
    return (sigma_data / sigma) ** 2


def snr_weight(spec: ObjectiveSpec, kind: str, sigma: torch.Tensor, sigma_data: float = 1.0) -> torch.Tensor:
    """Per-sample loss weight from min-SNR-gamma and/or debiased estimation (kohya's formulas)."""
    w = torch.ones_like(sigma)
    if spec.min_snr_gamma <= 0 and not spec.debiased_estimation:
        return w
    s = snr(kind, sigma, sigma_data)
    if spec.min_snr_gamma > 0:
        clipped = torch.minimum(s, torch.full_like(s, spec.min_snr_gamma))
        w = w * (clipped / (s + 1.0) if kind == "v" else clipped / s)
    if spec.debiased_estimation:
        w = w / torch.sqrt(s.clamp(max=1000.0))
    return w


def elementwise_loss(spec: ObjectiveSpec, residual: torch.Tensor) -> torch.Tensor:
    if spec.loss == "l2":
        return residual ** 2
    if spec.loss == "l1":
        return residual.abs()
    if spec.loss == "huber":
        c = spec.huber_c
        return 2 * c * (torch.sqrt(residual ** 2 + c ** 2) - c)
    if spec.loss == "smooth_l1":
        return F.smooth_l1_loss(residual, torch.zeros_like(residual), reduction="none", beta=spec.huber_c)
    raise ValueError(f"unknown loss {spec.loss!r}; choose one of {LOSSES}")


def make_noise(spec: ObjectiveSpec, like: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Gaussian noise with the optional offset and multi-resolution (pyramid) terms, on CPU for repeatability."""
    if like.dim() == 5:
        # Video-latent families ([B, C, T, H, W]; T=1 for still images): frames as extra channels.
        b, c, t, h, w = like.shape
        return make_noise(spec, like.reshape(b, c * t, h, w), gen).reshape(like.shape)
    b, c, h, w = like.shape
    noise = torch.randn(like.shape, generator=gen, dtype=torch.float32)
    if spec.noise_offset:
        noise = noise + spec.noise_offset * torch.randn((b, c, 1, 1), generator=gen)
    if spec.multires_noise_iterations > 0:
        for i in range(spec.multires_noise_iterations):
            r = float(torch.rand((), generator=gen)) * 2 + 2
            hh, ww = max(1, int(h / r ** (i + 1))), max(1, int(w / r ** (i + 1)))
            low = torch.randn((b, c, hh, ww), generator=gen)
            noise = noise + F.interpolate(low, size=(h, w), mode="bilinear") * spec.multires_noise_discount ** (i + 1)
            if hh == 1 and ww == 1:
                break
        noise = noise / noise.std()
    return noise


TIMESTEP_SAMPLINGS = ("auto", "uniform", "logit_normal", "sigmoid")


def sample_percents(spec: ObjectiveSpec, n: int, gen: torch.Generator, family_default: str = "uniform") -> list[float]:
    """Fractions of the schedule (0 = the noisiest end, as the host's percent_to_sigma reads them);
    ``family_default`` is what "auto" means for the model being trained."""
    lo, hi = spec.min_timestep, spec.max_timestep
    if not 0.0 <= lo < hi <= 1.0:
        raise ValueError(f"timestep range must satisfy 0 <= min < max <= 1 (got {lo}, {hi})")
    scheme = family_default if spec.timestep_sampling == "auto" else spec.timestep_sampling
    if scheme == "uniform":
        u = torch.rand(n, generator=gen)
    elif scheme in ("logit_normal", "sigmoid"):
        # t (1 = pure noise) = sigmoid(mean + std * z); the schedule fraction is 1 - t.
        t = torch.sigmoid(spec.logit_mean + spec.logit_std * torch.randn(n, generator=gen))
        u = 1.0 - t
    else:
        raise ValueError(f"unknown timestep sampling {scheme!r}; choose one of {TIMESTEP_SAMPLINGS}")
    return [lo + (hi - lo) * float(x) for x in u]


def batch_loss(spec: ObjectiveSpec, kind: str, x0_hat: torch.Tensor, x0: torch.Tensor, sigma: torch.Tensor,
               sample_weight: torch.Tensor | None = None, mask: torch.Tensor | None = None,
               sigma_data: float = 1.0) -> torch.Tensor:
    """Mean loss over the batch in the model family's native target space."""
    scale = residual_scale(kind, sigma, sigma_data).view(-1, *([1] * (x0.dim() - 1)))
    residual = (x0_hat.float() - x0.float()) * scale
    per_elem = elementwise_loss(spec, residual)
    if mask is not None:
        per_elem = per_elem * mask
        per_sample = per_elem.flatten(1).sum(1) / (mask.expand_as(per_elem).flatten(1).sum(1) + 1e-8)
    else:
        per_sample = per_elem.flatten(1).mean(1)
    per_sample = per_sample * snr_weight(spec, kind, sigma, sigma_data)
    if sample_weight is not None:
        per_sample = per_sample * sample_weight
    return per_sample.mean()


def is_finite(x: float) -> bool:
    return not (math.isnan(x) or math.isinf(x))
