"""Pre-flight estimate of memory and time, shown before a bake starts, with what to change if it won't fit.

Memory: the diffusion model's weights as stored, plus what training adds on the device: the tensors one
step keeps for backward (from a trace of the step's forward, host.preflight, scaled by batch size), the
backward's transient gradients and the adapters' weights, gradients and optimizer state. The same trace
prices the other settings (checkpointing, fp8 base weights, a smaller batch), so the advice can name the
ones that fit."""
from __future__ import annotations

from dataclasses import dataclass, replace

# Optimizer state bytes per trainable parameter (fp32 state).
STATE_BYTES = {"adamw": 8, "adamw8bit": 2, "prodigy": 16, "lion": 4, "adafactor": 4, "came": 8, "sgd": 4,
               "schedulefree_adamw": 12}


@dataclass(frozen=True)
class Preflight:
    seconds_per_step: float
    total_seconds: float
    trainable_params: int
    adapter_bytes: int          # weights + grads + optimizer state of the adapters
    peak_bytes: int | None      # measured over one trial step (CUDA); None where it can't be measured
    free_bytes: int | None
    memory: "MemoryEstimate | None" = None   # the estimate made before the model was loaded

    def fits(self) -> bool:
        if self.memory is not None and self.memory.budget_bytes is not None:
            return self.memory.fits()
        return self.peak_bytes is None or self.free_bytes is None or self.peak_bytes < 0.95 * self.free_bytes

    def advice(self) -> list[str]:
        """The settings that would fit, named (core.train.estimate.MemoryEstimate.fitting_settings)."""
        if self.fits():
            return []
        if self.memory is not None:
            fitting = self.memory.fitting_settings()
            if fitting:
                return fitting
        return ["enable gradient checkpointing", "lower the batch size (raise gradient accumulation to keep the "
                "effective batch)", "use adamw8bit", "train at a lower resolution", "pick a smaller VRAM preset"]

    def summary(self, total_steps: int) -> str:
        gib = 2 ** 30
        parts = [f"~{self.seconds_per_step:.2f} s/step, ~{self.total_seconds / 60:.1f} min for {total_steps} steps",
                 f"{self.trainable_params / 1e6:.2f}M trainable parameters ({self.adapter_bytes / 2**20:.0f} MiB with "
                 "gradients and optimizer state)"]
        if self.peak_bytes is not None:
            parts.append(f"peak {self.peak_bytes / gib:.2f} GiB" +
                         (f" of {self.free_bytes / gib:.2f} GiB free" if self.free_bytes else ""))
        text = "pre-flight: " + "; ".join(parts)
        if not self.fits():
            text += ". It will not fit: " + ", or ".join(self.advice()) + "."
        return text


def heaviest_batch(dataset, plan):
    """The micro-batch of ``plan`` (lists of sample refs) with the most pixels x frames: the one the pre-flight
    trace prices, so a dataset whose first batch is a still image is still estimated at its longest clip
    window (a 33-frame window at 512 px keeps ~9x the activations of one image)."""
    def weight(refs):
        total = 0
        for r in refs:
            e = dataset.images[r.index]
            total += e.bucket[0] * e.bucket[1] * max(1, len(e.frames))
        return total
    return max(plan, key=weight, default=None)


def clip_fit_error(estimate: "MemoryEstimate", frames: int, size: tuple[int, int]) -> str | None:
    """Why a clip window cannot train on this device, or None: one step's activations and adapters alone (with
    every weight streamed off the device) exceed the budget, so the first step would run out of memory."""
    if estimate.budget_bytes is None or estimate.training_bytes() <= estimate.budget_bytes:
        return None
    mib = 2 ** 20
    s = estimate.settings
    lean = TrainingSettings(1, True, s.weight_bytes_per_param)
    fixes = []
    if (not s.checkpointing or s.batch_size > 1) and estimate.training_bytes(lean) <= estimate.budget_bytes:
        fixes.append("gradient_checkpointing on" + (" and batch_size 1" if s.batch_size > 1 else ""))
    share = estimate.budget_bytes / estimate.training_bytes(lean)
    if frames > 1:
        fewer = max(1, int(frames * min(share, 1.0)))
        fixes.append(f"fewer frames per window (Load Dataset target_frames{f', about {fewer}' if share < 1 else ''})")
    fixes.append("a lower resolution (Load Dataset resolution / max_bucket_reso)")
    return (f"a {frames}-frame clip window at {size[0]}x{size[1]} needs about {estimate.training_bytes() / mib:.0f} "
            f"MiB for one training step's activations, more than the {estimate.budget_bytes / mib:.0f} MiB this "
            f"device has even with every weight streamed off it. Set " + "; or ".join(fixes) + ".")


def checkpointing_needed(estimate: "MemoryEstimate") -> bool:
    """Whether a run with gradient checkpointing off cannot take one step without it: its activations alone (every
    weight streamed off the device by the host's partial loading) exceed the device budget, and with checkpointing
    they fit. Weights that do not fit are the partial loading's job, so a step that can run with checkpointing off
    (streaming weights) keeps the setting as it is; only a step that would run out of memory turns it on."""
    s = estimate.settings
    if s.checkpointing or estimate.budget_bytes is None:
        return False
    return estimate.training_bytes() > estimate.budget_bytes >= estimate.training_bytes(replace(s, checkpointing=True))


def checkpointing_note(estimate: "MemoryEstimate", frames: int, size: tuple[int, int]) -> str:
    """The line a run logs when ``checkpointing_needed`` turned checkpointing on: why, and how to train without."""
    mib = 2 ** 20
    on = replace(estimate.settings, checkpointing=True)
    return (f"gradient checkpointing turned on: a {frames}-frame clip window at {size[0]}x{size[1]} needs about "
            f"{estimate.training_bytes() / mib:.0f} MiB for one step without it, more than the "
            f"{estimate.budget_bytes / mib:.0f} MiB this device has even with every weight streamed off it (about "
            f"{estimate.training_bytes(on) / mib:.0f} MiB with it). To train without checkpointing, use fewer frames "
            "per window (Load Dataset target_frames), a lower resolution or a smaller batch.")


def adapter_bytes(trainable_params: int, optimizer: str) -> int:
    return trainable_params * (4 + 4 + STATE_BYTES.get(optimizer, 8))



@dataclass(frozen=True)
class ActivationTrace:
    """What one micro-batch's forward keeps for backward (host.preflight traces it on fake tensors)."""
    batch: int
    saved_bytes: int                 # new tensors kept for backward without checkpointing (cast weights
                                     # re-cast in backward not included)
    outside_units_bytes: int         # of those, kept outside every checkpoint unit
    unit_bytes: tuple[int, ...]      # kept inside each checkpoint unit, cast weights included (a unit's
                                     # recomputation holds them)
    unit_input_bytes: int            # the units' inputs: what checkpointing keeps instead
    largest_bytes: int               # the largest single kept tensor
    # The forward's own peak (kept tensors, conditioning built in the step, a block's temporaries), without
    # and with checkpointing: above what backward holds where the step builds wide conditioning (HiDream).
    forward_peak_bytes: int = 0
    forward_peak_checkpointed_bytes: int = 0


# During backward the gradient of the largest kept activation and the gradient flowing into it exist
# beside the kept tensors; measured against the allocator's records on the memory bench's models. With
# checkpointing the peak is inside one recomputed unit, whose backward has already freed part of what it
# kept when those gradients form: one transient (the bench's estimate/measured with two was 1.19-1.35 at
# batch 1 once adapters stopped holding output-sized copies, 0.91-1.23 with one).
BACKWARD_TRANSIENTS = 2
CHECKPOINTED_BACKWARD_TRANSIENTS = 1


def activation_bytes(trace: ActivationTrace, batch: int, checkpointing: bool) -> int:
    """Bytes a step at ``batch`` needs for its activations: what it keeps for backward with the backward's
    transient gradients, or the forward's own peak where that is higher."""
    if checkpointing:
        kept = trace.outside_units_bytes + trace.unit_input_bytes + max(trace.unit_bytes, default=0)
        kept += CHECKPOINTED_BACKWARD_TRANSIENTS * trace.largest_bytes
        forward = trace.forward_peak_checkpointed_bytes
    else:
        kept = trace.saved_bytes + BACKWARD_TRANSIENTS * trace.largest_bytes
        forward = trace.forward_peak_bytes
    return int(max(kept, forward) * batch / max(1, trace.batch))


@dataclass(frozen=True)
class TrainingSettings:
    batch_size: int
    checkpointing: bool
    weight_bytes_per_param: float     # as stored: 4 fp32, 2 bf16/fp16, 1 fp8


@dataclass(frozen=True)
class MemoryEstimate:
    """The device memory a bake needs, before it runs, and what would fit a budget."""
    trace: ActivationTrace
    weight_params: int                # the diffusion model's weights (count)
    adapter_bytes: int                # adapters' weights, gradients and optimizer state
    settings: TrainingSettings
    budget_bytes: int | None = None   # device memory the bake may use (None: not known, e.g. CPU)

    def weights_bytes(self, settings: TrainingSettings | None = None) -> int:
        s = settings or self.settings
        return int(self.weight_params * s.weight_bytes_per_param)

    def training_bytes(self, settings: TrainingSettings | None = None) -> int:
        """What training adds to the weights (the memory_required the host is asked to leave free)."""
        s = settings or self.settings
        return activation_bytes(self.trace, s.batch_size, s.checkpointing) + self.adapter_bytes

    def total_bytes(self, settings: TrainingSettings | None = None) -> int:
        return self.weights_bytes(settings) + self.training_bytes(settings)

    def fits(self, settings: TrainingSettings | None = None) -> bool:
        return self.budget_bytes is None or self.total_bytes(settings) <= self.budget_bytes

    def fitting_settings(self) -> list[str]:
        """The changes that bring the bake within the budget, each named as the node setting to change
        (gradient checkpointing, fp8 base weights, a smaller batch size): fewest changes first, a change that
        keeps the batch before one that lowers it, and no combination that contains a smaller one that fits."""
        if self.fits():
            return []
        s = self.settings
        fp8 = "fp8 base weights (load the model with weight_dtype fp8_e4m3fn)"
        options = [((), s)]
        if not s.checkpointing:
            options.append((("gradient_checkpointing on",), TrainingSettings(s.batch_size, True,
                                                                          s.weight_bytes_per_param)))
        if s.weight_bytes_per_param > 1:
            options += [(names + (fp8,), TrainingSettings(o.batch_size, o.checkpointing, 1)) for names, o in options]
        found: list[tuple[tuple[str, ...], bool]] = []     # (changes, lowers the batch)
        for names, option in options:
            if names and self.fits(option):
                found.append((names, False))
                continue
            batch = next((b for b in range(option.batch_size - 1, 0, -1)
                          if self.fits(TrainingSettings(b, option.checkpointing, option.weight_bytes_per_param))), 0)
            if batch:
                accum = -(-s.batch_size // batch)
                found.append((names + (f"batch_size {batch} (gradient accumulation {accum} keeps the effective "
                                       "batch)",), True))
        found = [(names, lowers) for names, lowers in found
                 if not any(set(other) < set(names) for other, _ in found)]
        found.sort(key=lambda f: (len(f[0]), f[1]))
        return [" and ".join(names) for names, _ in found]

    def summary(self) -> str:
        mib = 2 ** 20
        s = self.settings
        text = (f"memory estimate {self.total_bytes() / mib:.0f} MiB (weights {self.weights_bytes() / mib:.0f}, "
                f"training {self.training_bytes() / mib:.0f} at batch {s.batch_size}, checkpointing "
                f"{'on' if s.checkpointing else 'off'})")
        if self.budget_bytes is not None:
            text += f" of {self.budget_bytes / mib:.0f} MiB"
            if not self.fits():
                fitting = self.fitting_settings()
                text += (". It does not fit: the host will keep part of the weights off the device and stream "
                         "them (slower). To fit, set " + "; or ".join(fitting) if fitting else
                         ". It does not fit even with checkpointing, fp8 base weights and batch 1: the host will "
                         "keep part of the weights off the device and stream them (slower)")
        return text
