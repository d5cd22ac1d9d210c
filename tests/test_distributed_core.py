"""Data-parallel training over gloo on CPU: 2 ranks with batch B train the same adapters as 1 process
with batch 2B (same seed), their saved state is the same, and a resumed 2-rank run equals an
uninterrupted one, also after an interrupt that only one rank saw. Toy model, a few steps; three spawns
of 2 processes in all (start-up dominates)."""
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from kiln.core.train.distributed import Shard
from kiln.core.train.loop import TrainConfig
from kiln.core.train.state import load_state

import dist_toy_worker

# 5 images, 1 repeat, global batch 4 (2 ranks x 2): each epoch is a batch of 4 and a batch of 1, in
# which rank 1 has nothing and must still take part in the gradient average.
STEPS, SAVE_AT = 6, 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(out: Path, world=2, batch=2, save_every=0, resume=None, stop_at=0):
    out.mkdir(parents=True, exist_ok=True)
    mp.spawn(dist_toy_worker.main, args=(world, free_port(), str(out), batch, STEPS, save_every, 5,
                                         str(resume) if resume else None, stop_at), nprocs=world, join=True)
    return out


def single(out: Path, batch=4):
    out.mkdir(parents=True, exist_ok=True)
    dist_toy_worker.train(TrainConfig(max_steps=STEPS, batch_size=batch, seed=3, probe_samples=0), Shard(), out, 5)
    return out


def assert_same_run(a: Path, b: Path, atol=1e-6):
    fa, fb = load_file(str(a / "final.safetensors")), load_file(str(b / "final.safetensors"))
    assert fa.keys() == fb.keys()
    for k in fa:
        torch.testing.assert_close(fa[k], fb[k], rtol=0, atol=atol, msg=k)
    la = [line.split() for line in (a / "losses.txt").read_text().splitlines()]
    lb = [line.split() for line in (b / "losses.txt").read_text().splitlines()]
    assert [s for s, _ in la] == [s for s, _ in lb]
    for (_, x), (_, y) in zip(la, lb):
        assert abs(float(x) - float(y)) < 1e-5
    sa, sb = load_state(a / "final-state"), load_state(b / "final-state")
    assert sa.step == sb.step and sa.scheduler == sb.scheduler
    for k in sa.network:
        torch.testing.assert_close(sa.network[k], sb.network[k], rtol=0, atol=atol)
    assert len(sa.optimizer["state"]) == len(sb.optimizer["state"]) > 0
    for (_, ta), (_, tb) in zip(sorted(sa.optimizer["state"].items()), sorted(sb.optimizer["state"].items())):
        for name in ta:
            torch.testing.assert_close(torch.as_tensor(ta[name]), torch.as_tensor(tb[name]), rtol=1e-5, atol=1e-7)


def test_shard_bounds_cover_the_batch_without_overlap():
    for n in range(0, 11):
        for world in (1, 2, 3, 4):
            parts = [Shard(r, world).bounds(n) for r in range(world)]
            assert parts[0][0] == 0 and parts[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
            assert max(e - s for s, e in parts) - min(e - s for s, e in parts) <= 1
            assert sum(Shard(r, world).weight(n) for r in range(world)) == pytest.approx(world if n else 0)


def test_two_gloo_ranks_equal_one_process_and_resume_exactly(tmp_path):
    two = spawn(tmp_path / "two", save_every=SAVE_AT)
    one = single(tmp_path / "one", batch=4)
    assert_same_run(one, two)
    # A different batch is a different run: the comparison can fail.
    with pytest.raises(AssertionError):
        assert_same_run(single(tmp_path / "other", batch=2), two)

    assert (two / f"state{SAVE_AT}" / "state.json").is_file()   # the periodic save, rank 0 only

    # Rank 1 alone sees an interrupt before micro-batch 4: both ranks stop there, rank 0 saves step 3.
    stopped = spawn(tmp_path / "stopped", stop_at=4)
    assert sorted(p.name for p in stopped.iterdir()) == ["state3", "stopped-rank0", "stopped-rank1"]
    # Resumed on 2 ranks from that state, the run ends where the uninterrupted one does.
    resumed = spawn(tmp_path / "resumed", resume=stopped / "state3")
    assert [line.split()[0] for line in (resumed / "losses.txt").read_text().splitlines()] == ["4", "5", "6"]
    fa, fb = load_file(str(two / "final.safetensors")), load_file(str(resumed / "final.safetensors"))
    for k in fa:
        torch.testing.assert_close(fa[k], fb[k], rtol=0, atol=1e-6, msg=k)
    periodic, interrupted = load_state(two / f"state{SAVE_AT}"), load_state(stopped / "state3")
    for k in periodic.network:
        torch.testing.assert_close(interrupted.network[k], periodic.network[k], rtol=0, atol=0)
