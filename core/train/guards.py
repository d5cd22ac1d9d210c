"""Guards that stop a run which would otherwise train nothing and report success.

A LoRA whose adapters never receive a gradient saves as an all-zero file (every ``lora_up`` still at its
zero init) and the loss does not move; nothing else in the loop notices. Two checks catch it:

- after the first backward, at least one adapter parameter must hold a non-zero gradient;
- a few optimizer steps later, at least one adapter parameter must differ from where it started (a
  gradient scaler that skips every step, or updates below the weights' precision, leave them as they were).

The error names the hooked layers and what the model's forward actually ran, so the cause (hooks on
modules the forward never calls, a forward run without autograd, a base that never sees the adapters'
output) can be read from the message.
"""
from __future__ import annotations

import torch
import torch.nn as nn


class NoTrainingSignal(RuntimeError):
    """The adapters get no gradient, or the optimizer never changes them: the run would train nothing."""


_SAMPLED = 64   # elements remembered per parameter for the "did anything move" check


def _fingerprint(p: torch.Tensor) -> torch.Tensor:
    """A few elements spread over the tensor, copied exactly: cheap, and any optimizer update that
    reaches the weights at all changes them (a norm could round an update away)."""
    flat = p.detach().reshape(-1)
    stride = max(1, flat.numel() // _SAMPLED)
    return flat[::stride][:_SAMPLED].to("cpu", copy=True)


class GradientGuard:
    def __init__(self, network, params: list[torch.Tensor], model=None, start_step: int = 0, warmup_steps: int = 0,
                 total_steps: int = 0):
        self.network, self.params, self.model = network, list(params), model
        # Allow the warm-up (whose first rates may be 0) before asking for movement.
        window = max(10, warmup_steps + 2)
        self.move_check_step = start_step + window if start_step + window <= total_steps else None
        self.start = [_fingerprint(p) for p in self.params] if self.move_check_step else []
        self.ran_adapters: set[str] = set()
        self.ran_layers: list[str] = []
        self._ran_modules: list[nn.Module] = []   # the Linear/Conv objects themselves, for the zero-weight check
        self._handles = []
        self._checked_gradients = False
        self._watch()

    # -- what the first forward runs ----------------------------------------------------------------
    def _watch(self) -> None:
        adapters = getattr(self.network, "adapters", None)
        if adapters is None:
            return
        for name, adapter in adapters.items():
            self._handles.append(adapter.register_forward_hook(
                lambda m, args, out, _name=name: self.ran_adapters.add(_name)))
        # Every Linear/Conv the forward calls, hooked or not, by class and shape: tells "the forward ran
        # other layers than the hooked ones" apart from "the forward ran nothing we know".
        def any_layer(module, args, out):
            if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)) and len(self.ran_layers) < 100000:
                self.ran_layers.append(f"{type(module).__name__}{tuple(module.weight.shape)}")
                self._ran_modules.append(module)
        self._handles.append(nn.modules.module.register_module_forward_hook(any_layer))

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    # -- the checks ---------------------------------------------------------------------------------
    def check_loss(self, loss: torch.Tensor) -> None:
        """Before the first backward: a loss with no autograd graph means no adapter took part at all."""
        if not self._checked_gradients and not loss.requires_grad:
            self._checked_gradients = True
            self.close()
            raise NoTrainingSignal("the loss does not depend on any adapter (no autograd graph). " + self._report())

    def check_gradients(self) -> None:
        """Call after the first optimizer step's backward, before the step (only the first call checks)."""
        if self._checked_gradients:
            return
        self._checked_gradients = True
        self.close()
        if any(p.grad is not None and bool(torch.any(p.grad != 0)) for p in self.params):
            return
        raise NoTrainingSignal("no adapter parameter received a gradient in the first step. " + self._report())

    def check_moved(self, step: int) -> None:
        """Call after each optimizer step; checks once, ``window`` steps after the start."""
        if self.move_check_step is None or step != self.move_check_step:
            return
        moved = any(not torch.equal(_fingerprint(p), s) for p, s in zip(self.params, self.start))
        self.start = []
        if not moved:
            raise NoTrainingSignal(
                f"after {step} steps every adapter parameter is still at its initial value (gradients came, "
                "but the optimizer changed nothing: an fp16 gradient scaler that skipped every step, or a "
                "learning rate too small for the weights' precision). " + self._report())

    def _report(self) -> str:
        adapters = list(getattr(self.network, "adapters", {}) or {})
        ran = [n for n in adapters if n in self.ran_adapters]
        hooked = ", ".join(adapters[:5]) + (f" and {len(adapters) - 5} more" if len(adapters) > 5 else "")
        kinds: dict[str, int] = {}
        for k in self.ran_layers:
            kinds[k] = kinds.get(k, 0) + 1
        ran_layers = ", ".join(f"{n}x {k}" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1])[:6])
        forward = _describe(self.model)
        blocked = self._zero_layers_not_hooked()
        if blocked:
            # A layer whose weight is all zero passes no gradient back to anything before it (its input's
            # gradient is W^T g = 0): a checkpoint with a zeroed output layer trains only through adapters on
            # that layer itself, which the host's own trainer (every weight) has and a kohya-style target set lacks.
            names = ", ".join(blocked[:3]) + (f" and {len(blocked) - 3} more" if len(blocked) > 3 else "")
            zero = (f"The forward runs {len(blocked)} layer(s) with an all-zero weight and no adapter ({names}): "
                    "no gradient passes back through them, so no adapter before them can learn. Train those "
                    "layers too (targets 'full' hooks the output conv), or check the checkpoint (a zero output "
                    "layer makes the model predict zero). ")
        else:
            zero = ""
        return (f"Hooked {len(adapters)} layers ({hooked}); the forward ({forward}) ran {len(ran)} of them and "
                f"{len(self.ran_layers)} Linear/Conv calls in all ({ran_layers or 'none'}). " + zero +
                "Nothing was saved as a result. If the forward ran none of the hooked layers, the model "
                "executes other modules than its state dict names (report the model type); if it ran them, "
                "the output does not depend on the adapters (check the model loads in fp32/bf16, try "
                "mixed_precision fp32, and a larger learning rate).")


    def _zero_layers_not_hooked(self) -> list[str]:
        """Names of the Linear/Conv layers the forward ran whose weight is exactly zero and that carry no
        adapter (checked only when a run is being stopped, so normal runs pay nothing)."""
        hooked = {id(getattr(a, "_base_layer", None)) for a in (getattr(self.network, "adapters", {}) or {}).values()}
        names = _module_names(self.model)
        found, seen = [], set()
        for module in self._ran_modules:
            if id(module) in seen or id(module) in hooked:
                continue
            seen.add(id(module))
            weight = getattr(module, "weight", None)
            try:
                is_zero = weight is not None and weight.numel() > 0 and not bool(weight.detach().any())
            except (RuntimeError, TypeError):   # a weight kind that can't be read this way (quantized storage)
                continue
            if is_zero:
                found.append(names.get(id(module), f"{type(module).__name__}{tuple(weight.shape)}"))
        return found


def _module_names(model) -> dict[int, str]:
    """id(module) -> its name in the host's model (``diffusion_model.out.2``), where the model exposes one
    (duck-typed: the host model's ``base`` is the ComfyUI model, a toy may be a Module or hold ``net``)."""
    for root in (getattr(model, "base", None), model, getattr(model, "net", None)):
        if isinstance(root, nn.Module):
            return {id(m): n for n, m in root.named_modules() if n}
    return {}


def _describe(model) -> str:
    """The model's forward as a chain of class names, e.g. HostDiffusionModel -> BaseModel (SD15) -> UNetModel
    (duck-typed: the host model keeps its ComfyUI model as ``base``, which holds ``diffusion_model``)."""
    describe = getattr(model, "describe_forward", None)
    if callable(describe):
        return describe()
    parts = [type(model).__name__]
    base = getattr(model, "base", None)
    if base is not None:
        config = getattr(base, "model_config", None)
        parts.append(type(base).__name__ + (f" ({type(config).__name__})" if config is not None else ""))
        inner = getattr(base, "diffusion_model", None)
        if inner is not None:
            parts.append(type(inner).__name__)
    return " -> ".join(parts)
