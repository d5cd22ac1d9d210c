"""Where a run saves and how: its own run folder, periodic/interrupt/final saves of the LoRA file plus a
resumable state, rotation of the periodic ones, and a failed save that leaves nothing half-written.

The host decides only the first run's folder (``<loras>/kiln_checkpoints/<name>``, see host/bake.py)."""
from __future__ import annotations

import logging
import re
import shutil
from glob import escape as glob_escape
from pathlib import Path

from ..lora.io import MAX_STEM_BYTES, remove_stale_temp_files, save_lora, short_file_stem
from .specs import SaveSpec
from .state import save_state

log = logging.getLogger("kiln")


def _holds_saves(folder: Path) -> bool:
    """A LoRA file or a finished resumable state (an unfinished one, without state.json, is no save)."""
    return folder.is_dir() and any(p.suffix == ".safetensors" or (p / "state.json").is_file() for p in folder.iterdir())


def run_folder(base: Path, output_name: str, resume_from: str = "") -> Path:
    """Where this run saves, given ``base``, the first run's folder for ``output_name``. A resumed run
    continues in the folder its state came from (when that is a folder of this name); any other run never
    writes into a folder holding another run's saves or resumable states, it takes the next free
    ``<name>_runN`` instead."""
    runs = re.compile(re.escape(base.name) + r"(_run\d+)?")
    if resume_from:
        parent = Path(resume_from).expanduser().resolve().parent
        if parent.parent == base.parent.resolve() and runs.fullmatch(parent.name):
            return base.parent / parent.name
    if not _holds_saves(base):
        return base
    n = 2
    while _holds_saves(base.with_name(f"{base.name}_run{n}")):
        n += 1
    run = base.with_name(f"{base.name}_run{n}")
    log.warning("Kiln: %s already holds saves of an earlier run named %r; they are kept, and this run saves to %s",
                base, output_name, run)
    return run


class NoSaver:
    """The saver of a data-parallel rank other than 0: rank 0 writes every file."""
    files: list = []
    errors: list = []

    def __call__(self, step: int, final: bool):
        return None


class RunSaver:
    """Periodic, interrupt and final saves: LoRA file + resumable state, atomic, keep the last K.

    A save that fails (full disk, permissions) is logged with the path it tried, leaves no partial files
    and keeps the last good save; training and the in-graph LoRA go on."""

    def __init__(self, spec: SaveSpec, base: Path, make_lora, make_state):
        self.spec = spec
        self.name = short_file_stem(spec.output_name)
        if self.name != re.sub(r"[^\w\-. ]+", "_", spec.output_name).strip(" ."):
            log.warning("Kiln: output name %r is longer than %d bytes; its files are named %r",
                        spec.output_name, MAX_STEM_BYTES, self.name)
        self.dir = run_folder(base, spec.output_name, spec.resume_from)
        # Temp files of writes killed midway: this run's folder at once, sibling runs' when clearly stale.
        stale = remove_stale_temp_files(self.dir)
        for sibling in base.parent.glob(glob_escape(base.name) + "*") if base.parent.is_dir() else []:
            if sibling != self.dir and sibling.is_dir():
                stale += remove_stale_temp_files(sibling, older_than_s=3600)
        if stale:
            log.info("Kiln: removed %d temp files left by an interrupted write (%s)", len(stale), stale[0].parent)
        self.make_lora, self.make_state = make_lora, make_state
        self.files: list[Path] = []
        self.errors: list[str] = []

    def __call__(self, step: int, final: bool) -> Path | None:
        path = self.dir / f"{self.name}-{step:06d}.safetensors"
        state_dir = self.dir / f"{self.name}-{step:06d}-state"
        try:
            save_lora(self.make_lora(step), path)
            if self.spec.save_state:
                save_state(state_dir, self.make_state(step))
        except OSError as exc:
            # Leave only complete saves behind, so rotation and resume never pick up a half-written one.
            path.unlink(missing_ok=True)
            if state_dir.is_dir():
                shutil.rmtree(state_dir, ignore_errors=True)
            kept = f"the last good save {self.files[-1]} is kept" if self.files else "no earlier save of this run exists"
            message = f"could not save step {step} to {path} ({exc.strerror or exc}); {kept}"
            self.errors.append(message)
            log.error("Kiln: %s. The trained LoRA is still output by the node: save it elsewhere with Kiln Save "
                      "LoRA, or free space and resume.", message)
            return None
        self.files.append(path)
        log.info("Kiln: saved %s", path)
        self._rotate(keep_latest=path)
        return path

    def _rotate(self, keep_latest: Path):
        periodic = sorted(p for p in self.dir.glob("*.safetensors") if re.search(r"-\d{6}\.safetensors$", p.name))
        excess = [p for p in periodic if p != keep_latest][: max(0, len(periodic) - max(1, self.spec.keep_last))]
        for p in excess:
            p.unlink(missing_ok=True)
            state = p.with_name(p.name[: -len(".safetensors")] + "-state")
            if state.is_dir():
                for f in state.iterdir():
                    f.unlink()
                state.rmdir()
