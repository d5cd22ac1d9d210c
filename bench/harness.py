"""What the benchmarks share: measuring a run's time and peak memory, and the host's TrainLoraNode inputs.

A benchmark imports it with the bench folder on sys.path (``sys.path.insert(0, str(REPO / "bench"))``)."""
from __future__ import annotations

import time
from pathlib import Path


def scratch_dir(prefix: str) -> Path:
    """A temporary folder for one benchmark process, removed when the process exits: a benchmark writes model
    files of hundreds of MB, and leaving one per run filled the disk that CI installs torch on."""
    import atexit
    import shutil
    import tempfile
    work = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, work, ignore_errors=True)
    return work


class RssSampler:
    """Peak growth of this process's resident memory over a baseline, sampled every 5 ms in a thread
    (ru_maxrss is a lifetime high-water mark, useless once model loading set it)."""

    def __init__(self):
        import threading
        import psutil
        self.proc = psutil.Process()
        self.base = self.proc.memory_info().rss
        self.peak = self.base
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while self.running:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.005)

    def stop(self) -> int:
        self.running = False
        self.thread.join()
        return self.peak - self.base


class RunMeter:
    """Wall time and peak memory of what runs between start and stop: on CUDA the allocator's peak over what
    was already allocated, on the CPU the process's resident-memory growth (RssSampler)."""

    def __init__(self, cuda: bool):
        import torch
        self.torch, self.cuda = torch, cuda
        self.rss = RssSampler()
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base_alloc = torch.cuda.memory_allocated()
        self.started = time.perf_counter()

    def stop(self) -> tuple[float, int]:
        """(seconds, peak bytes)."""
        if self.cuda:
            self.torch.cuda.synchronize()
        seconds = time.perf_counter() - self.started
        rss_peak = self.rss.stop()
        return seconds, (self.torch.cuda.max_memory_allocated() - self.base_alloc) if self.cuda else rss_peak


def native_inputs(dataset, refs, vae, clip) -> tuple:
    """What the host's TrainLoraNode takes made beforehand (not timed for it): the samples' latents (VAE
    encoded, in one batch) and each sample's caption encoded, in the order of ``refs``."""
    import torch
    with torch.inference_mode():
        latents = vae.encode(torch.stack([dataset.load_pixels(r) for r in refs]))
        positive = []
        for r in refs:
            positive += clip.encode_from_tokens_scheduled(clip.tokenize(dataset.caption(r, 0)))
    return latents, positive
