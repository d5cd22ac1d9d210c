"""Kiln's fixed-sample loss of any MODEL: the same images, noise and noise levels every time, so two trainers (Kiln
and the host's own TrainLoraNode, in the benchmarks) are graded on common ground."""
from __future__ import annotations

import torch

from ..core.train.loop import TrainConfig, Trainer
from ..core.train.optim import OptimizerSpec
from ..host.bake import latent_cache
from ..host.training import HostDiffusionModel, vae_encoder


class _NoNetwork:
    """Stands in for a network when only measuring a model's loss."""

    training = False

    def train(self, mode=True):
        return self

    def eval(self):
        return self


def fixed_sample_loss(model, clip, vae, dataset, samples: int = 8, seed: int = 0, space: str = "native") -> float:
    """Kiln's fixed-sample loss (same images, noise and noise levels every time) of any MODEL, e.g. one
    trained by another node: the common ground for comparing trainers. ``space`` "native" measures the
    residual in the family's own target (eps, v or flow: what Kiln trains), "x0" the MSE of the denoised
    latent (what the host's TrainLoraNode minimises), so each trainer can also be graded on its own terms."""
    if space not in ("native", "x0"):
        raise ValueError(f"space must be 'native' or 'x0', not {space!r}")
    with torch.inference_mode(False):
        hm = HostDiffusionModel(model, clip, False)
        if space == "x0":
            hm.kind = "x0"
        encode, encoder_id = vae_encoder(vae)
        trainer = Trainer(TrainConfig(seed=seed, probe_samples=samples), dataset, _NoNetwork(), OptimizerSpec(), hm,
                          latent_cache(encode, encoder_id))
        return trainer.probe_loss(samples)
