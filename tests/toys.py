"""Small stand-ins for the host's model and a dataset, for host-free tests of the training loop."""
from dataclasses import dataclass

import torch
import torch.nn as nn

from kiln.core.net.network import TargetLayer


@dataclass(frozen=True)
class ToyRef:
    index: int
    bucket: tuple = (8, 8)
    crop: tuple = (0, 0)
    flip: bool = False
    is_reg: bool = False


class ToyConfig:
    prior_loss_weight = 1.0


class ToyDataset:
    """n fixed random 'latents' with captions; plan = a seeded shuffle, repeated."""
    config = ToyConfig()

    def __init__(self, n=6, repeats=2):
        g = torch.Generator().manual_seed(123)
        self.latents = torch.randn(n, 4, 4, 4, generator=g)
        self.n, self.repeats = n, repeats

    def __len__(self):
        return self.n

    def steps_per_epoch(self, batch):
        return -(-self.n * self.repeats // batch)

    def total_steps(self, epochs, batch):
        return self.steps_per_epoch(batch) * epochs

    def epoch_plan(self, epoch, batch, seed):
        order = torch.randperm(self.n * self.repeats, generator=torch.Generator().manual_seed(seed * 31 + epoch))
        refs = [ToyRef(int(i) % self.n) for i in order]
        return [refs[i:i + batch] for i in range(0, len(refs), batch)]

    def caption(self, ref, seed):
        return f"item {ref.index}"

    def captions_vary(self):
        return False

    def training_metadata(self):
        return {}


class ToyLatents:
    def get(self, dataset, refs):
        return torch.stack([dataset.latents[r.index] for r in refs])


class ToyDenoiser(nn.Module):
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(7)
        self.conv_in = nn.Conv2d(4, 16, 3, padding=1)
        self.proj = nn.Linear(16 + 8, 16)
        self.conv_out = nn.Conv2d(16, 4, 1)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
        self.requires_grad_(False)

    def forward(self, x, text):
        h = torch.tanh(self.conv_in(x))
        b, c, hh, ww = h.shape
        t = text[:, None, :].expand(b, hh * ww, text.shape[-1])
        h = self.proj(torch.cat([h.flatten(2).transpose(1, 2), t], -1))
        return self.conv_out(h.transpose(1, 2).reshape(b, c, hh, ww))


class ToyModel:
    """Implements core.train.loop.DiffusionModel for an eps-prediction toy."""
    kind = "eps"
    sigma_data = 1.0
    device = torch.device("cpu")

    def __init__(self):
        self.net = ToyDenoiser()

    def process_latent_in(self, x):
        return x

    def percent_to_sigma(self, p):
        return 0.1 + 4.0 * (1 - p)

    def noise_scaling(self, sigma, noise, x0):
        return x0 + sigma.view(-1, 1, 1, 1) * noise

    def encode_text(self, captions):
        return [torch.tensor([float(len(c)), float(sum(map(ord, c)) % 7)] * 4) for c in captions]

    def predict_x0(self, x_t, sigma, conds):
        s = sigma.view(-1, 1, 1, 1)
        eps = self.net(x_t / torch.sqrt(s ** 2 + 1), torch.stack(conds))
        return x_t - s * eps

    # Host-style names, so the target presets see what they would in a real UNet.
    HOST_NAMES = {"conv_in": "diffusion_model.input_blocks.0.0",
                  "proj": "diffusion_model.middle_block.1.transformer_blocks.0.ff.net.2",
                  "conv_out": "diffusion_model.middle_block.1.proj_out"}

    def layers(self):
        return [TargetLayer("lora_unet_" + self.HOST_NAMES[n].split(".", 1)[1].replace(".", "_"),
                            self.HOST_NAMES[n], m, False, "MID")
                for n, m in self.net.named_modules() if n in self.HOST_NAMES]
