"""The pre-flight trace: what one training step will keep in memory, found before any weight is loaded.

The step's forward runs once under torch's FakeTensorMode (shapes and dtypes only: no computation, no
memory, the weights wherever they are), with the adapters attached and the host's training contexts on,
so every tensor autograd would keep for backward is seen with its size. Tensors that already exist (the
weights, the adapters, the cached latents and captions) are not counted; a low-precision weight's cast
copy is not counted where Kiln re-casts it in backward (host.checkpointing.recast_weights_in_backward). Each kept
tensor is attributed to the gradient-checkpoint unit it was saved in, so one trace prices checkpointing
on and off (core.train.estimate turns it into bytes); the forward's own peak is recorded beside it.

Where a forward reads tensor values, the trace is given them rather than giving up: integer and boolean tensors
from the caches stay real and ops on them alone run for real (Lumina2/Z-Image read the caption's token count
from its attention mask), and a top-k over activations (an MoE gate: HiDream) gets a balanced routing, whose
masks then index by position (see _balanced_choice for why that prices the step as any routing would).
"""
from __future__ import annotations

import contextlib
import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode, unset_fake_temporarily
from torch.utils._pytree import tree_leaves, tree_map

from ..core.train.estimate import ActivationTrace
from ..core.train.loop import autocast_dtype
from .checkpointing import checkpoint_units, recast_layers
from .training import ReaderWatch, UnchangedReaders


def _storage_key(t: torch.Tensor):
    try:
        return t.untyped_storage()._cdata
    except (RuntimeError, NotImplementedError):
        return None


def _nbytes(t: torch.Tensor) -> int:
    try:
        return int(t.untyped_storage().nbytes())
    except (RuntimeError, NotImplementedError):
        return t.numel() * t.element_size()


def _known_values(args, kwargs) -> bool:
    """Whether an op reads only real (not fake) integer or boolean tensors: values the trace knows. Floating
    tensors (weights, activations, latents, caption features) are always traced as fakes."""
    tensors = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
    return bool(tensors) and not any(isinstance(t, FakeTensor) or t.is_floating_point() or t.is_complex()
                                     for t in tensors)


_INDEXING = {torch.ops.aten.index.Tensor, torch.ops.aten.index_put.default, torch.ops.aten.index_put_.default,
             torch.ops.aten._index_put_impl_.default}


def _masks_as_positions(indices):
    """A real boolean mask index as the positions it selects (what indexing does with it): a fake tensor
    indexed by known positions has a known shape, where a mask would ask the fake mode for its count."""
    out = []
    for index in indices:
        if isinstance(index, torch.Tensor) and not isinstance(index, FakeTensor) and \
                index.dtype in (torch.bool, torch.uint8):
            with unset_fake_temporarily():
                out.extend(index.nonzero().unbind(1))
        else:
            out.append(index)
    return out


def _balanced_choice(fake_indices, choices: int, dim: int) -> torch.Tensor:
    """Known indices in place of a top-k's: each row picks its k choices round-robin, so every choice is
    picked equally often. Top-k over activations is how an MoE gate routes tokens to experts (HiDream); the
    routing is the one value of the forward a trace cannot know, and with experts of one size what the step
    keeps for backward depends only on how many tokens are routed in all (tokens x k), not on which expert
    takes which, so any routing with the real k prices those the same; the balanced one gives each expert
    its average share."""
    with unset_fake_temporarily():
        moved = fake_indices.movedim(dim, -1)
        k = moved.shape[-1]
        rows = moved.numel() // max(k, 1)
        picks = (torch.arange(rows).unsqueeze(1) * k + torch.arange(k)) % choices
        return picks.reshape(moved.shape).movedim(-1, dim).to(fake_indices.dtype).contiguous()


class _FreshAllocations(TorchDispatchMode):
    """Records the storages the traced ops allocate. A view or an in-place result shares its input's
    storage and is not new; tensors made from real ones (weights, adapters, cached latents and captions)
    were never allocated by an op here, so they count as existing."""

    def __init__(self, fake_mode, device: torch.device):
        super().__init__()
        self.fake_mode, self.device = fake_mode, device
        self.fresh: set = set()
        self.fakes: dict = {}
        # The forward's own peak: fresh storages alive at once (each freed when its last tensor dies), less
        # what training will not hold then (set by the trace: units' internals under checkpointing, cast
        # weights re-cast in backward). Conditioning built inside the step (HiDream's 4096-wide T5 and Llama
        # states, batched) and a block's temporaries can make it higher than what backward keeps.
        self.live = 0
        self.refs: dict = {}          # fresh storage key -> [live tensors, bytes]
        self.not_held = 0             # kept by the trace, not by training
        self.released_by_units = 0    # kept by finished units, freed there under checkpointing
        self.peak = self.peak_checkpointed = 0

    def _hold(self, t, key) -> None:
        held = self.refs[key]
        held[0] += 1
        weakref.finalize(t, self._drop, key)

    def _drop(self, key) -> None:
        held = self.refs.get(key)
        if held is None:
            return
        held[0] -= 1
        if held[0] == 0:
            self.live -= held[1]
            del self.refs[key]

    def _fake(self, t):
        # One fake per real tensor, so a no-op cast of a weight returns that same fake; on the training
        # device, where the weights will be (a fake on an accelerator takes none of its memory).
        if isinstance(t, torch.Tensor) and not isinstance(t, FakeTensor):
            held = self.fakes.get(id(t))
            if held is None or held[0] is not t:
                fake = self.fake_mode.from_tensor(t)
                if fake.device != self.device:
                    fake = fake.to(self.device)
                held = self.fakes[id(t)] = (t, fake)
            return held[1]
        return t

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if _known_values(args, kwargs) and not func._schema.is_mutable:   # a real cached tensor is never written
            # Integer and boolean tensors made from the cached captions (Lumina2/Z-Image's text attention
            # mask, whose token count the host reads with .item()) keep their real values: an op on them
            # alone runs for real, so the forward takes the branch and the sequence length training will.
            with unset_fake_temporarily():
                return func(*args, **kwargs)
        if func in _INDEXING and len(args) > 1:
            args = (args[0], _masks_as_positions(args[1])) + tuple(args[2:])
        args, kwargs = tree_map(self._fake, (args, kwargs))
        out = func(*args, **kwargs)
        if func is torch.ops.aten.topk.default:
            out = (out[0], _balanced_choice(out[1], args[0].shape[args[2] if len(args) > 2 else -1],
                                            args[2] if len(args) > 2 else -1))
        inputs = {_storage_key(t) for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                key = _storage_key(t)
                if key is None:
                    continue
                if key not in inputs:
                    self.fresh.add(key)
                    if key not in self.refs:
                        self.refs[key] = [0, _nbytes(t)]
                        self.live += self.refs[key][1]
                if key in self.refs:
                    self._hold(t, key)
        held = self.live - self.not_held
        self.peak = max(self.peak, held)
        self.peak_checkpointed = max(self.peak_checkpointed, held - self.released_by_units)
        return out


def host_caches() -> list:
    """The host's memoised functions (``functools.lru_cache`` / ``cache`` wrappers, module-level or methods of the
    host's classes: Chroma Radiance's ``fetch_pos``, LTX's ``generate_freq_grid_np``), found in the loaded ``comfy``
    modules. A traced forward fills them with fake tensors that a real step would then be handed."""
    import sys
    found, seen = [], set()
    for name, module in list(sys.modules.items()):
        if module is None or not (name == "comfy" or name.startswith(("comfy.", "comfy_extras."))):
            continue
        for value in list(vars(module).values()):
            for obj in [value] + (list(vars(value).values()) if isinstance(value, type) and
                                  getattr(value, "__module__", None) == name else []):
                if callable(getattr(obj, "cache_clear", None)) and callable(getattr(obj, "cache_info", None)) \
                        and id(obj) not in seen:
                    seen.add(id(obj))
                    found.append(obj)
    return found


@contextlib.contextmanager
def _host_caches_left_clean():
    """Whatever the traced forward memoised in the host's caches is dropped when the trace ends (those entries
    hold fake tensors); the next real forward fills them again."""
    try:
        yield
    finally:
        for cached in host_caches():
            cached.cache_clear()


def _fake_step(hm, network, trainer, latents, conds, n: int, *contexts) -> None:
    """One training forward and loss of ``n`` images on fake tensors, with ``contexts`` entered inside the
    fake mode (hooks that watch it). The host's caches keep nothing from it."""
    sigma_value = hm.percent_to_sigma(0.5)   # a Python number: read before the fake mode, where reads fail
    with _host_caches_left_clean(), torch.inference_mode(False), torch.enable_grad(), network, \
            contextlib.ExitStack() as stack:
        for context in contexts:
            stack.enter_context(context)
        x0 = hm.process_latent_in(latents.to(hm.device, torch.float32))
        noise = torch.randn_like(x0)
        sigma = torch.full((n,), sigma_value, device=x0.device, dtype=torch.float32)
        x_t = hm.noise_scaling(sigma, noise, x0)
        dtype = autocast_dtype(trainer.cfg.mixed_precision, hm.device)
        with torch.autocast(hm.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            x0_hat = hm.predict_x0(x_t, sigma, conds)
        loss = (x0_hat.float() - x0).pow(2).mean()
        del loss


def called_modules(hm, network, latents, conds, trainer, n: int) -> set:
    """The diffusion model's modules whose forward a training step runs (on fake tensors): what can be a
    checkpoint unit (host.checkpointing.checkpoint_units)."""
    called: set = set()
    handles = [m.register_forward_pre_hook(lambda module, args: called.add(module))
               for m in hm.base.diffusion_model.modules()]
    try:
        mode = FakeTensorMode(allow_non_fake_inputs=True)
        _fake_step(hm, network, trainer, latents, conds, n, mode, _FreshAllocations(mode, hm.device))
    finally:
        for h in handles:
            h.remove()
    return called


class _SavedTensorRecorder:
    """What backward keeps, recorded as autograd saves it during a fake forward: each saved tensor's bytes, the
    checkpoint unit running when it was saved, and whether it is a low-precision layer's cast weight; the inputs
    each unit keeps when checkpointed; the largest single saved tensor."""

    def __init__(self, dm, network, low_precision, allocations):
        self.allocations = allocations
        self.current_unit: list[int] = []
        self.saved: dict = {}            # storage key -> (bytes, unit index or -1, is a cast weight)
        self.unit_inputs: dict = {}      # storage key -> bytes (tensors a checkpointed unit keeps as its input)
        self.kept_refs: list = []        # keeps the fake tensors alive so their storage keys stay unique
        self.largest = 0
        self.unit_saved = 0              # fresh bytes kept inside the unit now running (freed at its end if checkpointed)
        # Weights (and their transposes, which fake tracing may materialise) are kept by reference, not copied.
        # A low-precision layer's weight in another dtype is its cast copy: kept while a checkpointed unit is
        # recomputed, re-cast in backward otherwise (host.checkpointing.recast_weights_in_backward).
        self.weight_shapes, self.cast_shapes = set(), set()
        for p in list(dm.parameters()) + list(network.parameters()):
            self.weight_shapes.add((tuple(p.shape), p.dtype))
            if p.dim() == 2:
                self.weight_shapes.add((tuple(p.shape[::-1]), p.dtype))
        for layer in low_precision:
            shape = tuple(layer.weight.shape)
            self.cast_shapes.update({shape, shape[::-1]} if len(shape) == 2 else {shape})

    def pack(self, t):
        if (tuple(t.shape), t.dtype) in self.weight_shapes:
            return t
        key = _storage_key(t)
        if key is not None and key not in self.saved:
            n = _nbytes(t)
            cast = tuple(t.shape) in self.cast_shapes
            self.saved[key] = (n, self.current_unit[-1] if self.current_unit else -1, cast)
            if not cast:
                self.largest = max(self.largest, n)
            if key in self.allocations.fresh:
                if cast:
                    self.allocations.not_held += n
                elif self.current_unit:
                    self.unit_saved += n
            self.kept_refs.append(t)
        return t

    def watch(self, units) -> list:
        """Hooks marking each unit's start (its floating inputs are what it keeps when checkpointed) and end."""
        handles = []
        for i, unit in enumerate(units):
            def unit_pre(m, args, kwargs, _i=i):
                self.current_unit.append(_i)
                self.unit_saved = 0
                for v in list(args) + list(kwargs.values()):
                    if isinstance(v, torch.Tensor) and v.is_floating_point():
                        key = _storage_key(v)
                        if key is not None:
                            self.unit_inputs.setdefault(key, _nbytes(v))
                            self.kept_refs.append(v)

            def unit_post(m, args, output):
                if self.current_unit:
                    self.current_unit.pop()
                    self.allocations.released_by_units += self.unit_saved
                    self.unit_saved = 0
            handles.append(unit.register_forward_pre_hook(unit_pre, with_kwargs=True))
            handles.append(unit.register_forward_hook(unit_post))
        return handles

    def trace(self, batch: int, n_units: int) -> ActivationTrace:
        fresh = self.allocations.fresh
        new = {k: v for k, v in self.saved.items() if k in fresh}
        per_unit = [0] * n_units
        outside = 0
        for n, unit, cast in new.values():
            if unit >= 0:
                per_unit[unit] += n
            elif not cast:
                outside += n
        boundaries = sum(n for k, n in self.unit_inputs.items() if k in fresh)
        return ActivationTrace(batch=batch, saved_bytes=sum(n for n, _, cast in new.values() if not cast),
                               outside_units_bytes=outside, unit_bytes=tuple(per_unit), unit_input_bytes=boundaries,
                               largest_bytes=self.largest, forward_peak_bytes=self.allocations.peak,
                               forward_peak_checkpointed_bytes=self.allocations.peak_checkpointed)


def trace_training_step(hm, network, trainer, refs, checkpoint_depth: int = 1,
                        called: set | None = None) -> ActivationTrace:
    """Trace one micro-batch (``refs``) of ``trainer``'s step on ``hm`` with ``network`` attached.

    The latents and captions of ``refs`` are taken from the trainer's caches (encoded there if missing:
    the same work the first step would do); everything after that runs on fake tensors. ``called``, when
    given, is filled with the modules whose forward the step runs, and the checkpoint units are chosen
    among them (as training will).

    The traced forward also finds the residual readers whose input no op changes in place afterwards
    (host.training.residuals_grad_safe), which then need no copy of it: it runs with no copies, and sets
    ``hm.unchanged_readers``; where some input was changed (Flux, LTX), the step is traced again with those
    readers' copies, as training will make them."""
    latents = trainer.latents.get(trainer.dataset, refs)
    conds = trainer.encode_captions([trainer.dataset.caption(r, 0) for r in refs], refs)
    dm = hm.base.diffusion_model
    if called is not None:
        called.update(called_modules(hm, network, latents, conds, trainer, len(refs)))
    units = checkpoint_units(dm, checkpoint_depth, called)
    watch = ReaderWatch(dm)
    hm.unchanged_readers = UnchangedReaders.everything()
    try:
        trace = _trace_once(hm, network, trainer, latents, conds, len(refs), units, watch.watching())
    except BaseException:
        hm.unchanged_readers = UnchangedReaders()
        raise
    hm.unchanged_readers = watch.result()
    if watch.changed():
        trace = _trace_once(hm, network, trainer, latents, conds, len(refs), units)
    return trace


def _trace_once(hm, network, trainer, latents, conds, n: int, units, *contexts) -> ActivationTrace:
    """One fake step with the saved-tensor recorder on ``units`` (and ``contexts`` entered)."""
    dm = hm.base.diffusion_model
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    allocations = _FreshAllocations(mode, hm.device)
    recorder = _SavedTensorRecorder(dm, network, set(recast_layers(hm.patcher)), allocations)
    handles = recorder.watch(units)
    try:
        _fake_step(hm, network, trainer, latents, conds, n, mode, allocations,
                   torch.autograd.graph.saved_tensors_hooks(recorder.pack, lambda t: t), *contexts)
    finally:
        for h in handles:
            h.remove()
    return recorder.trace(n, len(units))
