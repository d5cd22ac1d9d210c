"""The training loop. Host specifics (the model's forward, text encoding, sampling, saving, progress,
interrupt) come in through ``DiffusionModel`` and ``TrainHooks``; everything here is plain torch."""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import torch
import torch.nn.functional as F

from ..data.controls import control_identity
from ..fields import setting
from .objective import ObjectiveSpec, batch_loss, is_finite, make_noise, sample_percents
from .distributed import Shard
from .guards import GradientGuard
from .size_conditioning import size_conditioning
from .optim import OptimizerSpec, build_optimizer, build_scheduler
from .state import TrainState


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = setting(10, "Passes over the dataset (each image repeats N times per epoch, from its N_name folder).",
                          min=1, max=10000)
    max_steps: int = setting(0, "If > 0, train exactly this many steps instead of the epochs.", min=0, max=1000000)
    batch_size: int = setting(1, "Images per step (mixed captions are fine).", min=1, max=256)
    grad_accum: int = setting(1, "Micro-batches per optimizer step (the loss is divided).", min=1, max=256)
    seed: int = setting(0, "Seed for noise, timesteps, shuffles and dropout; a CPU run repeats exactly.",
                        min=0, max=2**31 - 1)
    mixed_precision: str = setting("auto", "auto: bf16 on a GPU that supports it, fp32 otherwise. fp16 uses a "
                                   "gradient scaler.", choices=("auto", "fp32", "bf16", "fp16"))
    gradient_checkpointing: bool = setting(False, "Trade compute for memory by recomputing blocks in backward.")
    checkpoint_depth: int = setting(1, "With gradient checkpointing: 1 recomputes each block in backward, 2 each part "
                                    "of a block (attention, MLP), ... Deeper keeps less alive while a block is "
                                    "recomputed.", min=1, max=5)
    objective: ObjectiveSpec = field(default_factory=ObjectiveSpec)
    save_every_n_steps: int = setting(0, "Save LoRA + resumable state every N steps (0: only at the end or on "
                                      "interrupt).", min=0, max=100000)
    save_every_n_epochs: int = setting(0, "Save every N epochs (0: off).", min=0, max=10000)
    sample_every_n_steps: int = setting(0, "Sample the prompts every N steps (0: only at the end).", min=0, max=100000)
    ema_decay: float = setting(0.0, "Keep an exponential moving average of the LoRA weights (e.g. 0.999) and save "
                               "that; 0 turns it off.", min=0.0, max=0.99999, step=0.0001)
    probe_samples: int = 8             # fixed-noise loss before and after training (0 = skip)
    masked_loss: bool = setting(False, "Weight the loss by each image's mask (its alpha channel or a mask file "
                                "beside it).")
    validation_split: float = setting(0.0, "Hold out this fraction of the images and report their loss (fixed "
                                      "noise) during training.", min=0.0, max=0.5, step=0.05)
    validation_every_n_steps: int = setting(0, "How often to compute the validation loss (0: never).",
                                            min=0, max=100000)


class DiffusionModel(Protocol):
    """What the loop needs of the host's model (implemented in host/training.py)."""
    kind: str
    sigma_data: float
    device: torch.device

    def process_latent_in(self, latents: torch.Tensor) -> torch.Tensor: ...
    def percent_to_sigma(self, percent: float) -> float: ...
    def noise_scaling(self, sigma: torch.Tensor, noise: torch.Tensor, x0: torch.Tensor) -> torch.Tensor: ...
    def predict_x0(self, x_t: torch.Tensor, sigma: torch.Tensor, conds: list) -> torch.Tensor: ...
    # A model whose conditioning reads each image's size and crop (SDXL) sets ``reads_image_sizes`` and
    # takes predict_x0(..., sizes=[SizeConditioning per sample]).
    def encode_text(self, captions: list[str]) -> list: ...
    # An edit model whose text encoder also sees the control images (Qwen-Image-Edit) sets
    # ``encode_text_with_controls(captions, controls)``: each caption with its sample's control pixels [H, W, 3].


@dataclass
class TrainHooks:
    progress: Callable[[int, int, float], None] = lambda step, total, loss: None
    check_interrupt: Callable[[], None] = lambda: None
    interrupt_types: tuple = ()
    save: Callable[[int, bool], None] = lambda step, final: None   # write LoRA + state for this step
    sample: Callable[[int], None] = lambda step: None
    first_micro: Callable[[float], None] = lambda seconds: None    # timing of the first micro-batch (pre-flight)
    validation: Callable[[int, float], None] = lambda step, loss: None   # a held-out loss, for the live chart
    log: Callable[[str], None] = print


class TrainingDiverged(RuntimeError):
    pass


@dataclass
class TrainResult:
    step: int
    total_steps: int
    losses: list[tuple[int, float]]
    interrupted: bool = False
    seconds: float = 0.0
    probe_start: float | None = None   # loss on fixed samples/noise before training ...
    probe_end: float | None = None     # ... and after: the honest "did it learn" figure
    validation: list = field(default_factory=list)   # (step, held-out fixed-sample loss)


def autocast_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    if mode == "fp32":
        return None
    if mode == "bf16":
        return torch.bfloat16
    if mode == "fp16":
        return torch.float16
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None  # CPU: fp32 (CPU autocast is slower than fp32 for these layers)


@contextlib.contextmanager
def own_global_rng(seed: int, device: torch.device):
    """torch's global generators (CPU, and ``device``'s when it is CUDA) seeded with ``seed`` inside and
    restored after. Only these are touched: other GPUs' generators, and CUDA's when training on the CPU."""
    cuda = device.type == "cuda"
    index = (device.index if device.index is not None else torch.cuda.current_device()) if cuda else None
    with torch.random.fork_rng(devices=[index] if cuda else []):
        torch.random.default_generator.manual_seed(seed)
        if cuda:
            torch.cuda.default_generators[index].manual_seed(seed)
        yield


def step_seed(seed: int, micro: int) -> int:
    """Per micro-batch seed: a step's noise, timesteps, captions and dropout depend only on (seed, step),
    which makes a resumed run identical to an uninterrupted one."""
    return (seed * 1_000_003 + micro * 7919) % (2 ** 63 - 1)


class Trainer:
    def __init__(self, cfg: TrainConfig, dataset, network, opt_spec: OptimizerSpec, model: DiffusionModel,
                 latents, hooks: TrainHooks | None = None, validation=None, shard: Shard | None = None):
        self.cfg, self.dataset, self.network, self.opt_spec = cfg, dataset, network, opt_spec
        self.validation = validation
        self.model, self.latents = model, latents
        self.hooks = hooks or TrainHooks()
        # Data-parallel (core.train.distributed): the plan is made with the global batch, one slice per rank.
        self.shard = shard or Shard()
        self.plan_batch = cfg.batch_size * self.shard.world
        self.micro_per_epoch = len(dataset.epoch_plan(0, self.plan_batch, cfg.seed))
        total_micro = self.micro_per_epoch * cfg.epochs
        self.total_steps = cfg.max_steps if cfg.max_steps > 0 else max(1, math.ceil(total_micro / cfg.grad_accum))
        self._text_cache: dict[str, Any] = {}
        self.ema = None

    # -- step and epoch arithmetic: a step is one optimizer step, grad_accum micro-batches ----------
    def epochs_done(self, step: int) -> int:
        """Whole epochs finished after ``step`` optimizer steps (kohya's ss_epoch of a save there)."""
        return step * self.cfg.grad_accum // max(1, self.micro_per_epoch)

    def epoch_of_step(self, step: int) -> int:
        """The 1-based epoch that optimizer step ``step`` (1-based) finished in (the progress figure)."""
        return 1 + (max(1, step) * self.cfg.grad_accum - 1) // max(1, self.micro_per_epoch)

    def plan_text(self, images: int) -> str:
        """The start-of-run line: micro-batches per epoch and optimizer steps, not one for the other."""
        cfg = self.cfg
        steps = (f"{self.total_steps} optimizer steps (max_steps)" if cfg.max_steps > 0 else
                 f"{self.micro_per_epoch * cfg.epochs} batches / accumulation {cfg.grad_accum} = "
                 f"{self.total_steps} optimizer steps")
        batch = (f"{self.plan_batch} ({cfg.batch_size} on each of {self.shard.world} ranks)" if self.shard.world > 1
                 else f"{cfg.batch_size}")
        return (f"{images} images, {self.micro_per_epoch} batches of {batch} per epoch "
                f"({self.micro_per_epoch / cfg.grad_accum:g} optimizer steps) x {cfg.epochs} epochs: {steps}")

    # -- pieces -------------------------------------------------------------------------------------
    def micro_batches(self, start_micro: int):
        """(micro index, epoch, refs) from ``start_micro`` on, across epochs, until the steps are done."""
        micro = 0
        epoch = 0
        end = self.total_steps * self.cfg.grad_accum
        while micro < end:
            plan = self.dataset.epoch_plan(epoch, self.plan_batch, self.cfg.seed)
            for refs in plan:
                if micro >= start_micro:
                    yield micro, epoch, refs
                micro += 1
                if micro >= end:
                    return
            epoch += 1

    def encode_captions(self, captions: list[str], refs=None) -> list:
        """Each caption's encoding, cached per caption; for a model whose text encoder also sees the control images
        (``encode_text_with_controls``: Qwen-Image-Edit), per caption and sample's controls (``refs``)."""
        keys, items, encode = captions, captions, self.model.encode_text
        with_controls = getattr(self.model, "encode_text_with_controls", None)
        if with_controls is not None and refs is not None:
            keys = [(c, control_identity(self.dataset, r)) for c, r in zip(captions, refs)]
            items = list(zip(captions, refs))
            n = getattr(self.dataset, "controls_per_image", 0)

            def encode(pairs):
                return with_controls([c for c, _ in pairs],
                                     [[self.dataset.load_control(r, k) for k in range(n)] for _, r in pairs])
        if self.dataset.captions_vary() or getattr(self.model, "train_text_encoder", False):
            return encode(items)
        missing = {k: item for k, item in zip(keys, items) if k not in self._text_cache}
        if missing:
            for k, enc in zip(missing, encode(list(missing.values()))):
                self._text_cache[k] = enc
        return [self._text_cache[k] for k in keys]

    def micro_loss(self, micro: int, refs, percents: list[float] | None = None, sharded: bool = False) -> torch.Tensor:
        """The loss of one micro-batch; ``sharded``: ``refs`` is the global batch and this rank computes its
        slice, weighted so that the mean over the ranks is the global batch's loss."""
        seed = step_seed(self.cfg.seed, micro)
        gen = torch.Generator().manual_seed(seed)
        # Adapter dropouts draw from torch's global generators, the ones gradient checkpointing saves and
        # replays in backward; they are seeded per micro-batch for exact resume, inside a fork so the
        # host's own random state (other nodes' seeds) is the same after a bake as before it.
        with own_global_rng(seed, self.model.device):
            if not sharded or self.shard.world == 1:
                return self._micro_loss(seed, gen, refs, percents)
            start, end = self.shard.bounds(len(refs))
            if start == end:   # fewer samples than ranks: this rank adds zero gradients to the average
                return sum(p.sum() for p in self.network.parameters() if p.requires_grad) * 0.0
            return self._micro_loss(seed, gen, refs, percents, (start, end)) * self.shard.weight(len(refs))

    def _micro_loss(self, seed: int, gen: torch.Generator, refs, percents, part=None) -> torch.Tensor:
        # ``part``: this rank's slice of the global batch ``refs``; noise and noise levels are drawn for the
        # whole batch (the same draws one process makes) and sliced.
        full = len(refs)
        start, end = part or (0, full)
        refs = refs[start:end]
        latents = self.latents.get(self.dataset, refs)
        x0 = self.model.process_latent_in(latents.to(self.model.device, torch.float32))
        captions = [self.dataset.caption(r, seed) for r in refs]
        conds = self.encode_captions(captions, refs)
        obj = self.cfg.objective
        like = x0 if part is None else x0.new_empty((full, *x0.shape[1:]))
        noise = make_noise(obj, like, gen)[start:end].to(x0.device)
        if percents is None:
            percents = sample_percents(obj, full, gen, getattr(self.model, "timestep_sampling", "uniform"))
        percents = percents[start:end]
        sigma = torch.tensor([self.model.percent_to_sigma(p) for p in percents],
                             device=x0.device, dtype=torch.float32)
        x_t = self.model.noise_scaling(sigma, noise, x0)
        weights = torch.tensor([self.dataset.config.prior_loss_weight if r.is_reg else 1.0 for r in refs],
                               device=x0.device)
        dtype = autocast_dtype(self.cfg.mixed_precision, self.model.device)
        with torch.autocast(self.model.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            x0_hat = self.model.predict_x0(x_t, sigma, conds, **self.size_kwargs(refs))
        mask = self.latent_masks(refs, x0) if self.cfg.masked_loss else None
        return batch_loss(obj, self.model.kind, x0_hat, x0, sigma, weights, mask=mask, sigma_data=self.model.sigma_data)

    def size_kwargs(self, refs) -> dict:
        """Each sample's original size, crop and bucket, for a model whose conditioning reads them."""
        if not getattr(self.model, "reads_image_sizes", False):
            return {}
        return {"sizes": [size_conditioning(self.dataset, r) for r in refs]}

    def latent_masks(self, refs, x0: torch.Tensor) -> torch.Tensor | None:
        """[B, 1, h, w] masks at latent size (area-averaged), ones where an image has none."""
        load = getattr(self.dataset, "load_mask", None)
        if load is None:
            return None
        masks = []
        for ref in refs:
            m = load(ref)
            if m is None:
                masks.append(torch.ones(1, 1, *x0.shape[-2:]))
            else:
                masks.append(F.interpolate(m.float()[None, None], size=x0.shape[-2:], mode="area"))
        return torch.cat(masks).to(x0.device)

    def probe_loss(self, n: int = 8, dataset=None) -> float:
        """Loss on a fixed set of samples, noise and noise levels (spread over the schedule), without
        training: comparable before and after, unlike the per-step loss whose noise level is random."""
        dataset = dataset or self.dataset
        refs = [r for batch in dataset.epoch_plan(0, 1, self.cfg.seed) for r in batch][:n]
        if dataset is not self.dataset:
            train_dataset, self.dataset = self.dataset, dataset
            try:
                return self._fixed_loss(refs)
            finally:
                self.dataset = train_dataset
        return self._fixed_loss(refs)

    def _fixed_loss(self, refs) -> float:
        was_training = self.network.training
        self.network.eval()
        total = 0.0
        with torch.no_grad():
            for i, ref in enumerate(refs):
                total += float(self.micro_loss(-1 - i, [ref], percents=[(i + 0.5) / len(refs)]))
        self.network.train(was_training)
        return total / max(1, len(refs))

    # -- the loop -----------------------------------------------------------------------------------
    def _start(self, resume: TrainState | None) -> tuple[list, int]:
        """The optimizer and scheduler (from ``resume`` when given, the network too); returns the trainable
        parameters and the step to continue from."""
        params = self.network.param_groups(self.opt_spec.lr, self.opt_spec.text_encoder_lr)
        self.optimizer = build_optimizer(self.opt_spec, params, self.model.device)
        self.scheduler = build_scheduler(self.opt_spec, self.optimizer, self.total_steps)
        step = 0
        if resume is not None:
            self.network.load_exported(resume.network)
            self.optimizer.load_state_dict(resume.optimizer)
            self.scheduler.load_state_dict(resume.scheduler)
            step = resume.step
        # A resumed state was saved with the evaluation weights (below); train() converts both back.
        self._optimizer_mode(train=True)
        self._ema_start(resume)
        return [p for g in params for p in g["params"]], step

    def _optimizer_step(self, trainable: list, scaler) -> None:
        """Clip, step (through the fp16 scaler when there is one), schedule, clear the gradients, update the EMA."""
        optimizer = self.optimizer
        if scaler:
            scaler.unscale_(optimizer)
        if self.opt_spec.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(trainable, self.opt_spec.max_grad_norm)
        if scaler:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        self.scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        self._ema_update()

    def _after_step(self, step: int, micro: int, epoch: int, validation: list) -> None:
        """What the settings ask for at the end of an optimizer step: a periodic save, a validation loss, samples
        (each on the evaluation weights)."""
        cfg, hooks = self.cfg, self.hooks
        end_of_epoch = (micro + 1) % self.micro_per_epoch == 0
        if (cfg.save_every_n_steps and step % cfg.save_every_n_steps == 0 and step < self.total_steps) or \
                (cfg.save_every_n_epochs and end_of_epoch and (epoch + 1) % cfg.save_every_n_epochs == 0
                 and step < self.total_steps):
            with self.evaluation_weights():
                hooks.save(step, False)
        if self.validation is not None and cfg.validation_every_n_steps and step % cfg.validation_every_n_steps == 0:
            with self.evaluation_weights():
                val = self.probe_loss(len(self.validation), self.validation)
            validation.append((step, val))
            hooks.validation(step, val)
            hooks.log(f"Kiln: step {step} validation loss {val:.4f}")
        if cfg.sample_every_n_steps and step % cfg.sample_every_n_steps == 0:
            self.network.eval()
            with self.evaluation_weights():
                hooks.sample(step)
            self.network.train()

    def run(self, resume: TrainState | None = None) -> TrainResult:
        cfg, hooks = self.cfg, self.hooks
        trainable, step = self._start(resume)
        optimizer = self.optimizer
        scaler = torch.amp.GradScaler(self.model.device.type) if cfg.mixed_precision == "fp16" else None
        with self.evaluation_weights():
            probe_start = self.probe_loss(cfg.probe_samples) if cfg.probe_samples else None
        losses: list[tuple[int, float]] = []
        validation: list[tuple[int, float]] = []
        started = time.perf_counter()
        self.network.train()
        accum_loss = 0.0
        interrupted = False
        first_timer = time.perf_counter()
        # Stops a run whose adapters get no gradient (or never move) instead of saving an all-zero LoRA.
        guard = GradientGuard(self.network, trainable, self.model, step, self.opt_spec.warmup_for(self.total_steps),
                              self.total_steps)
        try:
            for micro, epoch, refs in self.micro_batches(step * cfg.grad_accum):
                hooks.check_interrupt()
                loss = self.micro_loss(micro, refs, sharded=True)
                value = self.shard.mean(float(loss.detach()), self.model.device)
                if not is_finite(value):
                    raise TrainingDiverged(
                        f"loss became {value} at step {step + 1}; the last good save is kept. "
                        "Lower the learning rate, use fp32/bf16 instead of fp16, or enable gradient clipping.")
                guard.check_loss(loss)
                scaled = loss / cfg.grad_accum
                (scaler.scale(scaled) if scaler else scaled).backward()
                if first_timer is not None:
                    hooks.first_micro(time.perf_counter() - first_timer)
                    first_timer = None
                accum_loss += value / cfg.grad_accum
                if (micro + 1) % cfg.grad_accum:
                    continue
                self.shard.average_gradients(trainable)
                guard.check_gradients()
                self._optimizer_step(trainable, scaler)
                step += 1
                guard.check_moved(step)
                losses.append((step, accum_loss))
                hooks.progress(step, self.total_steps, accum_loss)
                accum_loss = 0.0
                self._after_step(step, micro, epoch, validation)
        except tuple(hooks.interrupt_types) as exc:
            interrupted = True
            optimizer.zero_grad(set_to_none=True)
            # Weights are consistent at every optimizer-step boundary, so this save is a good one.
            self._optimizer_mode(train=False)
            hooks.save(step, True)
            raise exc
        finally:
            guard.close()
            self.network.eval()
            # From here on (final save, the in-graph LoRA, the closing probe) the weights are the ones to
            # keep: a schedule-free optimizer's average, not its training point.
            self._optimizer_mode(train=False)
            self.last_result = TrainResult(step, self.total_steps, losses, interrupted, time.perf_counter() - started,
                                           probe_start, validation=validation)
        if cfg.probe_samples:
            self.last_result.probe_end = self.probe_loss(cfg.probe_samples)
            hooks.log(f"Kiln: fixed-sample loss {self.last_result.probe_start:.4f} -> {self.last_result.probe_end:.4f}")
        return self.last_result

    # -- schedule-free optimizers ------------------------------------------------------------------
    def _optimizer_mode(self, train: bool) -> None:
        """Schedule-free optimizers (pytorch-optimizer's ScheduleFree*) train at one point and keep the
        average elsewhere: ``eval()`` swaps the average into the parameters, ``train()`` swaps back.
        Other optimizers have neither method and are left alone."""
        switch = getattr(self.optimizer, "train" if train else "eval", None)
        if callable(switch):
            switch()

    @contextlib.contextmanager
    def evaluation_weights(self):
        """The weights to save, sample and measure with, then the training point back."""
        self._optimizer_mode(train=False)
        try:
            yield
        finally:
            self._optimizer_mode(train=True)

    def state(self, step: int, info: dict) -> TrainState:
        network = self.network.export()
        if self.ema is not None:
            network.update({f"{EMA_PREFIX}{i}": t.clone() for i, t in enumerate(self.ema)})
        return TrainState(step=step, network=network, optimizer=self.optimizer.state_dict(),
                          scheduler=self.scheduler.state_dict(), info=info)

    # -- EMA of the adapter weights ----------------------------------------------------------------
    def _ema_start(self, resume: TrainState | None) -> None:
        if self.cfg.ema_decay <= 0:
            return
        params = self._ema_params()
        if resume is not None and f"{EMA_PREFIX}0" in resume.network:
            self.ema = [resume.network[f"{EMA_PREFIX}{i}"].to(p.device, torch.float32) for i, p in enumerate(params)]
        else:
            self.ema = [p.detach().float().clone() for p in params]

    def _ema_params(self):
        return [p for p in self.network.parameters() if p.requires_grad]

    def _ema_update(self) -> None:
        if self.ema is None:
            return
        d = self.cfg.ema_decay
        with torch.no_grad():
            for shadow, p in zip(self.ema, self._ema_params()):
                shadow.mul_(d).add_(p.detach().float(), alpha=1 - d)

    @contextlib.contextmanager
    def ema_applied(self):
        """Swap the EMA weights in (for saving or sampling), and the live ones back afterwards."""
        if self.ema is None:
            yield
            return
        params = self._ema_params()
        live = [p.detach().clone() for p in params]
        with torch.no_grad():
            for p, shadow in zip(params, self.ema):
                p.copy_(shadow.to(p.dtype))
        try:
            yield
        finally:
            with torch.no_grad():
                for p, keep in zip(params, live):
                    p.copy_(keep)


EMA_PREFIX = 'kiln_ema.'
