"""Data-parallel runs under torchrun, host side: which rank writes, and agreeing on an interrupt.

Every rank runs the whole workflow (loads the model through the host, encodes its own latents and
captions); only rank 0 writes: LoRA saves, resumable states, samples, progress, and the workflow's
output files (the other ranks' output and temp folders are moved to a private temporary folder)."""
from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile

import folder_paths

from ..core.train.distributed import Shard, agreed_interrupt, env_world, join  # noqa: F401 (agreed_interrupt: for bake)

log = logging.getLogger("kiln")
_redirected: list[str] = []


def is_main_process() -> bool:
    """False on the ranks other than 0 of a torchrun job (known from the environment, before any group)."""
    rank, world, _ = env_world()
    return world <= 1 or rank == 0


def join_training(device) -> Shard:
    """This process's Shard for a bake (the process group starts on the first bake, from env://)."""
    shard = join(device)
    if shard.world > 1 and not _redirected:
        if not shard.is_main:
            # Nodes downstream of the Train node (Save Image, previews) run on every rank; only rank 0's
            # files are the run's, the others write into a folder removed at exit.
            scratch = tempfile.mkdtemp(prefix=f"kiln-rank{shard.rank}-")
            folder_paths.set_output_directory(os.path.join(scratch, "output"))
            folder_paths.set_temp_directory(os.path.join(scratch, "temp"))
            atexit.register(shutil.rmtree, scratch, True)
            _redirected.append(scratch)
        else:
            _redirected.append("")
        log.info("Kiln: data-parallel rank %d of %d (%s)", shard.rank, shard.world, "writes the files" if
                 shard.is_main else "computes only")
    return shard
