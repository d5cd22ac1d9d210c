"""Where a training step spends its time: torch.profiler over a few steps of either trainer (Kiln's bake or the
host's TrainLoraNode), cut into phases that mean the same for both.

Nothing in Kiln or the host carries profiling code: ``instrument`` wraps a few functions of the running process
in ``record_function`` ranges (the diffusion model's forward, ``Tensor.backward``, the host's weight cast and
patch, Kiln's adapter hook, the per-step norm-input hooks) and steps the profiler at each
``Optimizer.zero_grad`` (both trainers call it once per optimizer step). ``breakdown`` then splits the profiled
steps on the timeline:

- before the forward: the batch's latents, noise, noise levels, captions and the model's conditioning;
- the forward and the backward, each by layer kind (Linear, Conv, attention, norms, other ops), the adapter's own
  work (Kiln's bypass branch; the host's W + BA weight patch and weight cast), the hooks' work and Python time
  in which no op runs. A backward op is charged to the kind of the forward op that made it (the autograd
  sequence number links them), so "backward: Linear" is the Linear layers' input and weight gradients;
- the loss (between forward and backward), the optimizer (step and zero_grad), hook registration, and the
  rest (Python between the phases: loss read-back, gradient checks, progress).
"""
from __future__ import annotations

import contextlib
import functools
from collections import defaultdict

FORWARD = "phase.forward"
BACKWARD = "phase.backward"
ADAPTER = "phase.adapter"          # Kiln's bypass branch
PATCH = "phase.weight_patch"       # the host's weight cast + W + BA (comfy.ops.cast_bias_weight)
HOOK_BODY = "phase.hook"           # the per-step norm-input copies (host.training.residuals_grad_safe)
HOOK_REG = "phase.hook_registration"
DETAIL = "backward other: "          # breakdown's extra keys: the "other ops" backward nodes by name

KINDS = {
    "linear": ("aten::linear", "aten::addmm", "aten::mm", "aten::matmul"),
    "conv": ("aten::conv2d", "aten::convolution", "aten::_convolution", "aten::conv1d", "aten::conv3d"),
    "attention": ("aten::scaled_dot_product_attention", "aten::bmm", "aten::baddbmm", "aten::softmax",
                  "aten::_softmax", "aten::einsum"),
    "norm": ("aten::group_norm", "aten::layer_norm", "aten::native_group_norm", "aten::native_layer_norm",
             "aten::rms_norm"),
}
KIND_OF = {name: kind for kind, names in KINDS.items() for name in names}
PARTS = ("linear", "conv", "attention", "norm", "adapter", "hooks", "other ops", "python")
ROWS = (["step", "before forward (data, noise, conditioning)"] + [f"forward: {p}" for p in PARTS] + ["loss"]
        + [f"backward: {p}" for p in PARTS if p != "python"] + ["backward: autograd engine",
                                                               "optimizer (step, zero_grad)",
                                                               "hook registration", "rest (Python between phases)"])


def _ranged(fn, name):
    from torch.profiler import record_function

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with record_function(name):
            return fn(*args, **kwargs)
    return wrapper


@contextlib.contextmanager
def instrument(diffusion_model_class, profiler):
    """Wrap the process's functions in the ranges above for as long as the ``with`` lasts; every
    ``Optimizer.zero_grad`` steps ``profiler``."""
    import torch
    import comfy.ops
    saved = []

    def patch(owner, attr, new):
        saved.append((owner, attr, owner.__dict__[attr] if isinstance(owner, type) else getattr(owner, attr)))
        setattr(owner, attr, new)

    patch(diffusion_model_class, "forward", _counted(_ranged(diffusion_model_class.forward, FORWARD)))
    patch(torch.Tensor, "backward", _ranged(torch.Tensor.backward, BACKWARD))
    patch(comfy.ops, "cast_bias_weight", _ranged(comfy.ops.cast_bias_weight, PATCH))
    zero_grad = torch.optim.Optimizer.zero_grad

    def stepping_zero_grad(self, *args, **kwargs):
        out = zero_grad(self, *args, **kwargs)
        profiler.step()
        return out
    patch(torch.optim.Optimizer, "zero_grad", stepping_zero_grad)
    try:
        from kiln.core.net import network
        from kiln.host import training
    except ImportError:
        network = training = None
    if network is not None:
        make_hook = network._make_hook

        def ranged_make_hook(adapter):
            ADAPTED[id(adapter._base_layer)] = adapter.rank
            return _ranged(make_hook(adapter), ADAPTER)
        patch(network, "_make_hook", ranged_make_hook)
        patch(training, "residuals_grad_safe", _ranged_hooks(training.residuals_grad_safe))
    try:
        yield
    finally:
        for owner, attr, old in reversed(saved):
            setattr(owner, attr, old)


FLOPS: dict[str, float] = {}     # filled by the first instrumented forward: see _counted and compute_limit
ADAPTED: dict[int, int] = {}     # id of each layer Kiln adapts -> the adapter's rank (recorded as it attaches)


def _counted(forward):
    """The diffusion model's forward, its first call under torch's FLOP counter: FLOPS gets the forward FLOPs of
    its Linear and Conv layers ("layers") and of everything else the counter counts ("rest": attention)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    @functools.wraps(forward)
    def wrapper(self, *args, **kwargs):
        if FLOPS:
            return forward(self, *args, **kwargs)
        layer_flops = []

        branch_flops = []

        def count(module, inputs, out):
            linear = isinstance(module, torch.nn.Linear)
            per_output = module.in_features if linear else \
                module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            layer_flops.append(2.0 * out.numel() * per_output)
            rank = ADAPTED.get(id(module))
            if rank:   # Kiln's branch: down (fan-in -> rank) and up (rank -> out) per output position
                positions = out.numel() / (module.out_features if linear else module.out_channels)
                branch_flops.append(2.0 * positions * rank * (per_output + out.shape[-1 if linear else 1]))
        hooks = [m.register_forward_hook(count) for m in self.modules()
                 if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
        try:
            with FlopCounterMode(display=False) as counter:
                out = forward(self, *args, **kwargs)
        finally:
            for h in hooks:
                h.remove()
        FLOPS["layers"] = sum(layer_flops)
        FLOPS["rest"] = float(counter.get_total_flops()) - FLOPS["layers"] - sum(branch_flops)
        FLOPS["branch"] = sum(branch_flops)
        return out
    return wrapper


def compute_limit(flops: dict[str, float], branch: float = 0.0) -> str:
    """The speed-up over a trainer that forms every Linear/Conv weight gradient (W + BA patched) that a bypass
    trainer can reach on FLOPs alone: the host's step is 3 L + 3 R (forward, input and weight gradients of the
    layers; attention's forward and two backward products), the bypass step 2 L + 3 R (no weight gradient;
    elementwise work left out), and 2 L + 3 R + 3 B with its rank-sized branch (B: the branch's forward FLOPs,
    ``branch``, from the Kiln run; its backward is twice that)."""
    layers, rest = flops["layers"], flops["rest"]
    host = 3 * layers + 3 * rest
    return (f"forward GFLOPs: Linear/Conv {layers / 1e9:.2f}, attention and other counted ops {rest / 1e9:.2f}, "
            f"Kiln's branch {branch / 1e9:.2f}; compute limit (3L + 3R) / (2L + 3R) = "
            f"{host / (2 * layers + 3 * rest):.3f}x, with the branch (3L + 3R) / (2L + 3R + 3B) = "
            f"{host / (2 * layers + 3 * rest + 3 * branch):.3f}x")


def _ranged_hooks(residuals_grad_safe):
    """residuals_grad_safe with its registration and removal in HOOK_REG and the hooks' bodies in HOOK_BODY."""
    import torch
    from torch.profiler import record_function

    @contextlib.contextmanager
    def wrapped(root, enabled, *args):
        register = torch.nn.Module.register_forward_pre_hook

        def ranged_register(self, hook, *args, **kwargs):
            return register(self, _ranged(hook, HOOK_BODY), *args, **kwargs)
        cm = residuals_grad_safe(root, enabled, *args)
        with record_function(HOOK_REG):
            torch.nn.Module.register_forward_pre_hook = ranged_register
            try:
                cm.__enter__()
            finally:
                torch.nn.Module.register_forward_pre_hook = register
        try:
            yield
        finally:
            with record_function(HOOK_REG):
                cm.__exit__(None, None, None)
    return wrapped


def _label(event) -> str:
    """The part a forward op belongs to: a range of ours above it, else its outermost aten op's kind."""
    outer = event
    e = event
    while e is not None:
        if e.name in (ADAPTER, PATCH):
            return "adapter"
        if e.name == HOOK_BODY:
            return "hooks"
        if e.name.startswith("aten::"):
            outer = e
        e = e.cpu_parent
    return KIND_OF.get(outer.name, "other ops")


def _within(event, name) -> bool:
    e = event.cpu_parent
    while e is not None:
        if e.name == name:
            return True
        e = e.cpu_parent
    return False


def _under_optimizer(event) -> bool:
    e = event.cpu_parent
    while e is not None:
        if e.name.startswith("Optimizer."):
            return True
        e = e.cpu_parent
    return False


def _span(e) -> float:
    return (e.time_range.end - e.time_range.start) / 1000.0   # ms


def breakdown(events) -> dict[str, float]:
    """Milliseconds per step in each row of ROWS, from the events of the profiled steps."""
    events = [e for e in events if e.time_range.end > e.time_range.start or e.name.startswith("ProfilerStep")]
    steps = [e for e in events if e.name.startswith("ProfilerStep")]
    out = defaultdict(float)
    seq_label = {}
    # An op records the autograd sequence number current when it starts; the node carrying that number is made
    # by the last op to record it (earlier ones, e.g. a no-op ``to``, made none), so the last one wins.
    for e in sorted(events, key=lambda e: e.time_range.start):
        if e.name.startswith("aten::") and e.sequence_nr >= 0 and not _within(e, BACKWARD):
            seq_label[e.sequence_nr] = _label(e)
    tops = {FORWARD: [], BACKWARD: [], "optim": [], HOOK_REG: []}
    for e in events:
        if e.name in (FORWARD, BACKWARD, HOOK_REG) and not _within(e, e.name):
            tops[e.name].append(e)
        elif e.name.startswith("Optimizer.") and not _under_optimizer(e):
            tops["optim"].append(e)
    for f in tops[FORWARD]:
        out["forward total"] += _span(f)
        inner = 0.0
        for e in _children(f):
            if e.name.startswith("aten::") or e.name in (ADAPTER, PATCH, HOOK_BODY):
                out[f"forward: {_label(_first_op(e))}"] += _span(e)
                inner += _span(e)
        out["forward: python"] += _span(f) - inner
    for b in tops[BACKWARD]:
        out["backward total"] += _span(b)
        inner = 0.0
        for e in _children(b):
            if e.name.startswith("autograd::engine::evaluate_function"):
                label = _backward_label(e, seq_label)
                out[f"backward: {label}"] += _span(e)
                if label == "other ops":
                    out[f"{DETAIL}{e.name.split(': ', 1)[-1]}"] += _span(e)
                inner += _span(e)
        out["backward: autograd engine"] += _span(b) - inner
    out["optimizer (step, zero_grad)"] = sum(_span(e) for e in tops["optim"])
    out["hook registration"] = sum(_span(e) for e in tops[HOOK_REG])
    for step in steps:
        out["step"] += _span(step)
        first_forward = min((f.time_range.start for f in tops[FORWARD] if _inside(f, step)), default=None)
        if first_forward is not None:
            before = (first_forward - step.time_range.start) / 1000.0
            before -= sum(_span(e) for e in tops[HOOK_REG] if _inside(e, step) and e.time_range.end <= first_forward)
            out["before forward (data, noise, conditioning)"] += before
        for f in tops[FORWARD]:
            if not _inside(f, step):
                continue
            nxt = min((b.time_range.start for b in tops[BACKWARD] if b.time_range.start >= f.time_range.end), default=None)
            if nxt is not None:
                hooks_between = sum(_span(e) for e in tops[HOOK_REG] if f.time_range.end <= e.time_range.start < nxt)
                out["loss"] += (nxt - f.time_range.end) / 1000.0 - hooks_between
    accounted = (out["before forward (data, noise, conditioning)"] + out["forward total"] + out["loss"]
                 + out["backward total"] + out["optimizer (step, zero_grad)"] + out["hook registration"])
    out["rest (Python between phases)"] = out["step"] - accounted
    n = max(1, len(steps))
    return {row: out.get(row, 0.0) / n for row in list(ROWS) + [k for k in out if k.startswith(DETAIL)]}


def _backward_label(event, seq_label) -> str:
    """The forward part a backward node belongs to; Kiln's own autograd Functions (the fused LoRA branch,
    core/net/modules/fused.py) are the adapter's, whatever op their forward ran first."""
    if "LoRAAddBackward" in event.name:
        return "adapter"
    return seq_label.get(event.sequence_nr, "other ops")


def top_other_ops(rows: dict[str, float], n: int = 6) -> str:
    """The backward nodes that make up "backward: other ops", largest first (ms per step)."""
    parts = sorted(((v, k[len(DETAIL):]) for k, v in rows.items() if k.startswith(DETAIL)), reverse=True)[:n]
    return ", ".join(f"{name} {ms:.1f}" for ms, name in parts)


def _children(event):
    return event.cpu_children


def _first_op(event):
    """The event itself when it is an op; for one of our ranges, the range (its label comes from it)."""
    return event


def _inside(event, outer) -> bool:
    return outer.time_range.start <= event.time_range.start and event.time_range.end <= outer.time_range.end + 1


def profiler(active: int, on_ready):
    """A CPU (and CUDA when present) profiler over ``active`` steps after one skipped and one warm-up step."""
    import torch
    from torch.profiler import ProfilerActivity, profile, schedule
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    return profile(activities=activities, schedule=schedule(wait=1, warmup=1, active=active, repeat=1),
                   on_trace_ready=lambda p: on_ready(breakdown(p.events())))


def table(results: dict[str, dict[str, float]]) -> str:
    """Rows of ms per step, one column per trainer, with each row's share of that trainer's step."""
    names = list(results)
    lines = [f"{'ms per step':<44}" + "".join(f"{n:>22}" for n in names)]
    for row in ROWS:
        cells = []
        for n in names:
            ms, total = results[n][row], results[n]["step"]
            cells.append(f"{ms:>12.1f} ({100 * ms / max(total, 1e-9):>5.1f}%)")
        lines.append(f"{row:<44}" + "".join(f"{c:>22}" for c in cells))
    return "\n".join(lines)
