"""Pre-flight estimate of memory and time, shown before a bake starts, with what to change if it won't fit."""
from __future__ import annotations

from dataclasses import dataclass

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

    def fits(self) -> bool:
        return self.peak_bytes is None or self.free_bytes is None or self.peak_bytes < 0.95 * self.free_bytes

    def advice(self) -> list[str]:
        if self.fits():
            return []
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


def adapter_bytes(trainable_params: int, optimizer: str) -> int:
    return trainable_params * (4 + 4 + STATE_BYTES.get(optimizer, 8))
