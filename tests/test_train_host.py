"""Training through the real host: every algorithm's file loads in LoraLoader with every key applied and
the same sample as in-graph; text-encoder training changes CLIP; interrupt keeps a loadable file; resume
through the host continues the step count."""
import logging

import numpy as np
import pytest
import torch

ALGORITHMS = ["lora", "locon", "loha", "lokr", "ia3", "dylora", "dora", "full"]


def _sample(model, clip, vae, seed=5):
    import nodes
    with torch.inference_mode():
        pos = nodes.CLIPTextEncode().encode(clip, "kiln shapes, red circle")[0]
        neg = nodes.CLIPTextEncode().encode(clip, "")[0]
        latent = nodes.EmptyLatentImage().generate(64, 64, 1)[0]
        out = nodes.KSampler().sample(model, seed, 6, 4.0, "euler", "normal", pos, neg, latent)[0]
        return vae.decode(out["samples"]).float().cpu().numpy()


def _bake(loaded, spec, steps=20, name=None, **cfg):
    from kiln.core.train.loop import TrainConfig
    from kiln.core.train.optim import OptimizerSpec
    from kiln.core.train.specs import SaveSpec
    from kiln.host.bake import bake
    model, clip, vae, dataset = loaded
    with torch.inference_mode():
        return bake(model, clip, vae, dataset, spec, OptimizerSpec(lr=2e-3, scheduler="constant"),
                    TrainConfig(max_steps=steps, seed=0, probe_samples=0, **cfg),
                    SaveSpec(output_name=name or f"t_{spec.algorithm}", save_dtype="fp32"))


@pytest.mark.parametrize("algo", ALGORITHMS)
def test_every_algorithm_loads_in_lora_loader(loaded, algo, caplog, host):
    from kiln.core.net.registry import ALGORITHMS as REGISTRY, algorithm_class
    from kiln.core.net.spec import NetworkSpec
    import nodes
    name = "lora" if algo == "locon" else algo
    algorithm_class("lora")
    if name not in REGISTRY:
        pytest.fail(f"algorithm {name} is not registered")
    spec = NetworkSpec(algorithm=name, rank=4, alpha=4.0, conv_rank=4 if algo in ("locon", "loha", "lokr") else 0,
                       conv_alpha=4.0, targets="full" if algo in ("locon", "loha", "lokr") else "attn_mlp",
                       dora=name == "dora")
    result = _bake(loaded, spec)
    model, clip, vae, _ = loaded
    path = result.saved_files[-1]
    assert path.is_file()
    rel = path.relative_to(host.loras_dir()).as_posix()
    with caplog.at_level(logging.WARNING), torch.inference_mode():
        lm, lc = nodes.LoraLoader().load_lora(model, clip, rel, 1.0, 1.0)
    assert not [r for r in caplog.records if "lora key not loaded" in r.getMessage()], algo
    from_file = _sample(lm, lc, vae)
    in_graph = _sample(result.model, result.clip, vae)
    base = _sample(model, clip, vae)
    change = np.abs(in_graph - base).max()
    assert change > 1e-3, f"{algo}: training changed nothing"
    # The file's image matches the in-graph one to a small fraction of what training changed (an absolute
    # tolerance near the change itself would pass a file that applied nothing).
    gap = np.abs(from_file - in_graph).max()
    assert gap <= 0.01 * change, f"{algo}: file vs in-graph {gap:.3g}, training changed {change:.3g}"


def test_text_encoder_training_changes_clip(loaded):
    from kiln.core.net.spec import NetworkSpec
    model, clip, vae, _ = loaded
    result = _bake(loaded, NetworkSpec(rank=4, alpha=4.0, train_text_encoder=True), steps=10, name="te")
    assert any(k.startswith("lora_te_") for k in result.lora.tensors)
    with torch.inference_mode():
        before = clip.encode_from_tokens(clip.tokenize("kiln shapes, red circle"))
        after = result.clip.encode_from_tokens(result.clip.tokenize("kiln shapes, red circle"))
    assert (after - before).abs().max() > 1e-4


def test_interrupt_keeps_a_loadable_lora_and_resume_continues(loaded, host, caplog):
    import comfy.model_management as mm
    import nodes
    from kiln.core.lora.io import load_lora_file
    from kiln.core.net.spec import NetworkSpec
    from kiln.core.train.loop import TrainConfig
    from kiln.core.train.optim import OptimizerSpec
    from kiln.core.train.specs import SaveSpec
    from kiln.host.bake import bake, checkpoint_dir
    model, clip, vae, dataset = loaded

    def stop_at_7(step, total, loss):
        if step == 7:
            mm.interrupt_current_processing(True)
    spec, opt = NetworkSpec(rank=4, alpha=4.0), OptimizerSpec(lr=2e-3, scheduler="cosine")
    cfg = TrainConfig(max_steps=12, seed=1, probe_samples=0)
    with torch.inference_mode(), pytest.raises(mm.InterruptProcessingException):
        bake(model, clip, vae, dataset, spec, opt, cfg, SaveSpec(output_name="intr"), on_step=stop_at_7)
    saved = checkpoint_dir("intr") / "intr-000007.safetensors"
    assert saved.is_file()
    assert load_lora_file(saved).metadata["ss_steps"] == "7"
    with caplog.at_level(logging.WARNING), torch.inference_mode():
        nodes.LoraLoader().load_lora(model, clip, saved.relative_to(host.loras_dir()).as_posix(), 1.0, 1.0)
    assert not [r for r in caplog.records if "lora key not loaded" in r.getMessage()]

    with torch.inference_mode():
        resumed = bake(model, clip, vae, dataset, spec, opt, cfg,
                       SaveSpec(output_name="intr2", save_dtype="fp32", resume_from=str(checkpoint_dir("intr") / "intr-000007-state")))
        straight = bake(model, clip, vae, dataset, spec, opt, cfg, SaveSpec(output_name="intr3", save_dtype="fp32"))
    assert [s for s, _ in resumed.result.losses] == list(range(8, 13))
    for k, v in straight.lora.tensors.items():
        torch.testing.assert_close(resumed.lora.tensors[k], v, rtol=0, atol=1e-5)


def test_gradient_checkpointing_gives_the_same_lora(loaded, monkeypatch):
    import torch.utils.checkpoint as tuc
    from kiln.core.net.spec import NetworkSpec
    spec = NetworkSpec(rank=4, alpha=4.0)
    calls = []
    checkpoint = tuc.checkpoint

    def counting(*args, **kwargs):
        calls.append(1)
        return checkpoint(*args, **kwargs)
    monkeypatch.setattr(tuc, "checkpoint", counting)

    def bake_measuring(**kw):
        """Bytes autograd keeps for backward outside checkpointed blocks (inside them the checkpoint's own
        hooks keep only the block inputs): the activation memory checkpointing is there to cut, on any device."""
        kept = [0]

        def pack(t):
            kept[0] += t.numel() * t.element_size()
            return t
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            result = _bake(loaded, spec, steps=6, **kw)
        return result, kept[0]
    plain, plain_bytes = bake_measuring(name="gc_off")
    assert not calls
    checkpointed, checkpointed_bytes = bake_measuring(name="gc_on", gradient_checkpointing=True)
    assert len(calls) >= 6 * 3, "checkpointing did not run on the UNet's blocks"
    assert checkpointed_bytes < 0.5 * plain_bytes, (checkpointed_bytes, plain_bytes)
    for k, v in plain.lora.tensors.items():
        # Recomputed blocks sum their gradients in another order: float noise of ~1e-6 on near-zero entries.
        torch.testing.assert_close(checkpointed.lora.tensors[k], v, rtol=1e-4, atol=1e-5)


def test_latents_cached_on_disk_are_reused_by_the_next_run(loaded, host):
    import folder_paths
    from pathlib import Path
    from kiln.core.net.spec import NetworkSpec
    from kiln.core.train.loop import TrainConfig
    from kiln.core.train.optim import OptimizerSpec
    from kiln.core.train.specs import SaveSpec
    from kiln.host.bake import bake
    model, clip, vae, dataset = loaded
    cache_dir = Path(folder_paths.get_temp_directory()).parent / "kiln_latent_cache"
    for f in cache_dir.glob("*.safetensors") if cache_dir.is_dir() else []:
        f.unlink()   # other tests' runs must not have filled it
    encoded = []
    encode = vae.encode

    def counting_encode(pixels, *a, **k):
        encoded.append(pixels.shape[0])
        return encode(pixels, *a, **k)
    vae.encode = counting_encode
    runs, per_run = [], []
    for name in ("disk1", "disk2"):
        encoded.clear()
        with torch.inference_mode():
            runs.append(bake(model, clip, vae, dataset, NetworkSpec(rank=4, alpha=4.0), OptimizerSpec(lr=1e-3),
                             TrainConfig(max_steps=4, seed=0, probe_samples=0),
                             SaveSpec(output_name=name, save_dtype="fp32", cache_latents_to_disk=True)))
        per_run.append(sum(encoded))
    del vae.encode
    assert per_run[0] > 0 and per_run[1] == 0, per_run   # the second run encoded nothing: all from disk
    assert len(list(cache_dir.glob("*.safetensors"))) >= 1
    for k, v in runs[0].lora.tensors.items():
        torch.testing.assert_close(runs[1].lora.tensors[k], v)
