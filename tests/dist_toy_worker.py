"""A rank of a gloo data-parallel run of the toy trainer (spawned by tests/test_distributed_core.py)."""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import cli  # noqa: E402

cli.load_pack()

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from kiln.core.net.network import Network  # noqa: E402
from kiln.core.net.spec import NetworkSpec  # noqa: E402
from kiln.core.train.distributed import Shard, agreed_interrupt  # noqa: E402
from kiln.core.train.loop import TrainConfig, Trainer, TrainHooks  # noqa: E402
from kiln.core.train.optim import OptimizerSpec  # noqa: E402
from kiln.core.train.state import load_state, save_state  # noqa: E402
from toys import ToyDataset, ToyLatents, ToyModel  # noqa: E402

SPEC = NetworkSpec(rank=4, alpha=4, conv_rank=4, conv_alpha=4, targets="full")
OPT = OptimizerSpec(lr=3e-2, scheduler="cosine", warmup_steps=2)


class Stop(Exception):
    """Stands in for the host's interrupt exception."""


def train(cfg: TrainConfig, shard: Shard, out: Path, dataset_n=5, resume=None, stop_at=0):
    """Train, write the final adapters (and every save's state) from rank 0 only; returns the trainer.
    ``stop_at``: the last rank alone sees an interrupt at its stop_at-th interrupt check."""
    torch.manual_seed(0)
    model = ToyModel()
    net = Network(SPEC, model.layers())
    checks = []

    def check():
        checks.append(1)
        if stop_at and len(checks) == stop_at and shard.rank == shard.world - 1:
            raise Stop()
    hooks = TrainHooks(log=lambda m: None, interrupt_types=(Stop,),
                       check_interrupt=agreed_interrupt(check, shard, torch.device("cpu"), Stop))
    trainer = Trainer(cfg, ToyDataset(n=dataset_n, repeats=1), net, OPT, model, ToyLatents(), hooks, shard=shard)
    if shard.is_main:
        hooks.save = lambda step, final: save_state(out / f"state{step}", trainer.state(step, {}))
    try:
        with net:
            result = trainer.run(load_state(resume) if resume else None)
    except Stop:
        (out / f"stopped-rank{shard.rank}").write_text("")
        return trainer
    if shard.is_main:
        save_file({k: v.contiguous() for k, v in net.export().items()}, str(out / "final.safetensors"))
        (out / "losses.txt").write_text("\n".join(f"{s} {v!r}" for s, v in result.losses))
        save_state(out / "final-state", trainer.state(result.step, {}))
    return trainer


def main(rank, world, port, out, batch, max_steps, save_every, dataset_n, resume, stop_at=0):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        cfg = TrainConfig(max_steps=max_steps, batch_size=batch, seed=3, probe_samples=0, save_every_n_steps=save_every)
        train(cfg, Shard(rank, world), Path(out), dataset_n, resume, stop_at)
        # Leave together: a rank that tears its gloo group down while the other still works with it can abort
        # ("terminate called without an active exception", seen once in a full run).
        dist.barrier()
    finally:
        dist.destroy_process_group()
