"""Norm-input copies only where the residual is changed in place (host/training.py residuals_grad_safe, found by
the pre-flight trace, host/preflight.py): SD1.5's blocks add their residuals out of place, so a bake there copies
no norm input and trains the very LoRA the copy-everything bake trains; a block that adds into the tensor its norm
saved is found by the watch and keeps its copy, without which its backward fails."""
import pytest
import torch


class _Block(torch.nn.Module):
    """x -> x + proj(norm(x)), the add in place (Flux's, LTX's) or out of place (SD1.5's)."""

    def __init__(self, in_place: bool):
        super().__init__()
        self.norm = torch.nn.LayerNorm(8)
        self.proj = torch.nn.Linear(8, 8)
        self.in_place = in_place

    def forward(self, x):
        x = x * 1.0
        h = self.proj(self.norm(x))
        if self.in_place:
            x += h
            return x
        return x + h


def _watched(block):
    from torch._subclasses.fake_tensor import FakeTensorMode
    from kiln.host.training import ReaderWatch, UnchangedReaders, residuals_grad_safe
    watch = ReaderWatch(block)
    with FakeTensorMode(allow_non_fake_inputs=True), watch.watching(), \
            residuals_grad_safe(block, True, UnchangedReaders.everything()):
        out = block(torch.randn(2, 8, requires_grad=True))
        assert out.shape == (2, 8)
    return watch


def test_watch_finds_the_norm_whose_input_is_changed_in_place(host):
    from kiln.host.training import UnchangedReaders, residuals_grad_safe
    in_place, out_of_place = _Block(True), _Block(False)
    changed, unchanged = _watched(in_place), _watched(out_of_place)
    assert changed.changed() and in_place.norm not in changed.result().modules
    assert not unchanged.changed() and unchanged.result().modules == {out_of_place.norm}
    x = torch.randn(2, 8, requires_grad=True)
    # Without the copy the in-place block's backward fails; with what the watch found it runs.
    with residuals_grad_safe(in_place, True, UnchangedReaders.everything()):
        loss = in_place(x).sum()
    with pytest.raises(RuntimeError, match="inplace"):
        loss.backward()
    with residuals_grad_safe(in_place, True, changed.result()):
        in_place(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def _bake(loaded, name):
    from kiln.core.net.spec import NetworkSpec
    from kiln.core.train.loop import TrainConfig
    from kiln.core.train.optim import OptimizerSpec
    from kiln.core.train.specs import SaveSpec
    from kiln.host.bake import bake
    model, clip, vae, dataset = loaded
    return bake(model, clip, vae, dataset, NetworkSpec(rank=4, alpha=4.0, conv_rank=4, conv_alpha=4.0, targets="full"),
                OptimizerSpec(lr=1e-3, scheduler="constant"),
                TrainConfig(max_steps=2, batch_size=1, seed=0, probe_samples=0),
                SaveSpec(output_name=name, save_dtype="fp32", save_state=False))


def test_sd15_bake_copies_no_norm_input_and_trains_the_same_lora(loaded, monkeypatch):
    from kiln.host import preflight, training
    copies = []
    real_copy = training._copy_first_input

    def counted(module, args):
        copies.append(type(module).__name__)
        return real_copy(module, args)
    monkeypatch.setattr(training, "_copy_first_input", counted)
    found = []
    real_trace = preflight.trace_training_step

    def recording_trace(hm, *args, **kwargs):
        out = real_trace(hm, *args, **kwargs)
        found.append(hm.unchanged_readers)
        return out
    monkeypatch.setattr("kiln.host.placement.trace_training_step", recording_trace)
    lean = _bake(loaded, "residual_copies_lean")
    assert copies == [] and len(found) == 1 and len(found[0].modules) > 0 and found[0].functional
    # The old behaviour: the trace leaves nothing known, every norm input is copied.
    monkeypatch.setattr("kiln.host.placement.trace_training_step",
                        lambda hm, *a, **k: (real_trace(hm, *a, **k),
                                             setattr(hm, "unchanged_readers", training.UnchangedReaders()))[0])
    full = _bake(loaded, "residual_copies_full")
    assert len(copies) > 0 and {"GroupNorm", "LayerNorm"} <= set(copies)
    assert lean.lora.tensors.keys() == full.lora.tensors.keys()
    for key, value in lean.lora.tensors.items():
        assert torch.equal(value, full.lora.tensors[key]), key
