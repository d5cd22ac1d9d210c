"""Data-parallel training with torch.distributed: what each rank trains and how the ranks agree.

Under ``torchrun`` every rank builds the same trainer (same seed, same model, same adapters' initial
weights). The epoch plan is made with the global batch (per-rank batch x ranks), so it is the plan a
single process with that batch would follow; each global batch is split into contiguous, non-overlapping
slices, one per rank. Noise and noise levels are drawn for the whole global batch from the step's seed
and each rank takes its slice, so N ranks with batch B compute exactly the samples one process with
batch N*B computes. Each rank's loss is its slice's mean weighted by its share of the batch, and the
adapters' gradients are averaged over the ranks between backward and the optimizer step: the update is
the single process's update (up to float summation order). Optimizer state stays identical on every rank,
so rank 0's saved state is everyone's, and a resumed run continues exactly.

Gloo on CPU, NCCL on CUDA. Plain torch only (no host imports)."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Shard:
    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # -- the batch split -----------------------------------------------------------------------------
    def bounds(self, n: int) -> tuple[int, int]:
        """This rank's [start, end) in a global batch of ``n``: contiguous slices, sizes differing by at
        most one (a last, short batch of an epoch too); a rank may get none when n < world."""
        base, extra = divmod(n, self.world)
        start = self.rank * base + min(self.rank, extra)
        return start, start + base + (1 if self.rank < extra else 0)

    def weight(self, n: int) -> float:
        """Factor on this rank's mean loss so that the average over ranks is the global batch's mean."""
        start, end = self.bounds(n)
        return (end - start) * self.world / max(1, n)

    # -- agreement between ranks ----------------------------------------------------------------------
    def average_gradients(self, params) -> None:
        """All-reduce the adapters' gradients to their mean over the ranks (one flat buffer, one call).
        A parameter without a gradient on this rank (an empty slice) counts as zeros."""
        if self.world == 1:
            return
        params = [p for p in params if p.requires_grad]
        if not params:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1).float() for g in grads])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= self.world
        offset = 0
        for p, g in zip(params, grads):
            n = g.numel()
            p.grad = flat[offset:offset + n].view_as(g).to(g.dtype)
            offset += n

    def mean(self, value: float, device) -> float:
        """The mean of a float over the ranks (the global batch's loss, for the log and the NaN check)."""
        if self.world == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return float(t) / self.world

    def any(self, flag: bool, device) -> bool:
        """True on every rank when it is true on any (an interrupt seen by one rank stops all of them)."""
        if self.world == 1:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def agreed_interrupt(check, shard: Shard, device, exception_type):
    """``check`` (an interrupt check that raises ``exception_type``) made collective: when any rank sees an
    interrupt every rank raises it at the same micro-batch, so none is left waiting in a gradient
    all-reduce, and each takes the loop's interrupt path (rank 0 saves the last complete step)."""
    if shard.world == 1:
        return check

    def check_all():
        try:
            check()
            seen = False
        except exception_type:
            seen = True
        if shard.any(seen, device):
            raise exception_type()
    return check_all


def env_world() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) outside it."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0)))


def backend_for(device: torch.device) -> str:
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def join(device) -> Shard:
    """This process's Shard, starting the process group (from torchrun's env://) when it is not up yet.
    A single process gets Shard(0, 1) and no process group."""
    rank, world, _ = env_world()
    if world <= 1:
        return Shard()
    if not dist.is_initialized():
        device = torch.device(device)
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend_for(device), **kwargs)
    return Shard(dist.get_rank(), dist.get_world_size())
