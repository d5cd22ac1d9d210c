"""Peak memory of a piece of work, on CPU as on CUDA, without the host.

On CUDA the caching allocator keeps a peak counter. On CPU there is none, so the peak is rebuilt from
torch's profiler allocation events (every tensor allocation and free with its size, in order): the
running sum of the bytes allocated inside the region, and its maximum. Both figures count only what was
allocated inside the region (weights loaded before it are not included), i.e. activations, gradients,
optimizer state and temporaries: what checkpointing, batch size and offloading change.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch


@dataclass
class PeakMemory:
    peak_bytes: int = 0        # highest (allocated - freed) inside the region
    end_bytes: int = 0         # still allocated at its end
    allocations: int = 0


@contextlib.contextmanager
def measure_peak(device: torch.device | str = "cpu"):
    """``with measure_peak(device) as m: ...`` then ``m.peak_bytes``."""
    device = torch.device(device)
    out = PeakMemory()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        yield out
        torch.cuda.synchronize(device)
        out.peak_bytes = torch.cuda.max_memory_allocated(device) - start
        out.end_bytes = torch.cuda.memory_allocated(device) - start
        return
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=False) as prof:
        yield out
    # The allocator's own records (size > 0 allocated, < 0 freed, with a timestamp), every one of them;
    # the per-operator view of the same profile leaves some out.
    events = [(e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda t: t[0])
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    out.peak_bytes, out.end_bytes, out.allocations = peak, running, sum(1 for _, d in events if d > 0)
