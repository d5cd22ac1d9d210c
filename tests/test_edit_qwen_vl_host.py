"""Qwen-Image-Edit's text encoder sees the control images, as the host's TextEncodeQwenImageEditPlus shows them to
Qwen2.5-VL's vision tower: a tiny Qwen2.5-VL built from the host's own classes (qwen_image.te, llama.Qwen25_7BVLI,
qwen_vl's vision tower; random weights, fixed seed) encodes the instruction differently with and without a control,
training caches each caption per (caption, controls) and hits on the second epoch, and the training-time samples
encode the prompt with its picture."""
import numpy as np
import pytest
import torch

from conftest import REPO
from test_edit_host import _dataset, _pairs


@pytest.fixture(scope="module")
def qwen_edit(host):
    import nodes
    from kiln.devtools import family_fixtures as ff
    from kiln.host import reference
    if ff.available("qwen-image"):
        pytest.skip(ff.available("qwen-image"))
    clip = ff.real_text_encoder("qwen-image-edit")
    if clip is None or not reference.text_sees_controls(clip, "qwen-image"):
        pytest.skip("this ComfyUI has no Qwen2.5-VL text encoder with a vision tower / TextEncodeQwenImageEditPlus")
    assets = ff.ensure_family_assets("qwen-image", REPO / ".cache" / "test-assets")
    model, _ = ff.load_model("qwen-image", assets.unet_name)
    with torch.inference_mode():
        vae = nodes.VAELoader().load_vae(assets.vae_name)[0]
    return model, clip, vae


def _picture(rgb, size=64):
    image = torch.zeros(1, size, size, 3)
    image[...] = torch.tensor(rgb)
    return image


def test_the_instruction_is_encoded_with_the_control_images(qwen_edit):
    from kiln.devtools import family_fixtures as ff
    from kiln.host import reference
    _, clip, _ = qwen_edit
    assert not reference.text_sees_controls(ff.tiny_text_encoder("qwen-image"), "qwen-image")   # no vision tower
    assert not reference.text_sees_controls(clip, "flux1-dev")
    with torch.inference_mode():
        plain = clip.encode_from_tokens_scheduled(clip.tokenize("make it red"))[0][0]
        red, blue = (reference.encode_with_controls(clip, "make it red", [_picture(c)])[0][0]
                     for c in ((0.9, 0.1, 0.1), (0.1, 0.1, 0.9)))
        two = reference.encode_with_controls(clip, "make it red", [_picture((0.9, 0.1, 0.1))] * 2)[0][0]
    # the picture's vision tokens are part of the conditioning, and what they show changes it
    assert red.shape[1] > plain.shape[1] and two.shape[1] > red.shape[1]
    assert (red - blue).abs().max() > 1e-4


def test_an_edit_run_encodes_each_caption_with_its_controls_once(qwen_edit, host, tmp_path, monkeypatch):
    from kiln.host import reference
    model, clip, vae = qwen_edit
    root = _pairs(tmp_path)
    (root / "5_edit").rename(root / "1_edit")      # 4 pairs once per epoch: 2 batches of 2
    dataset = _dataset(root, controls="auto")
    encoded, contexts = [], []
    real = reference.ControlText.__call__

    def counting(self, captions, controls):
        encoded.extend((c, tuple(p.shape for p in ps)) for c, ps in zip(captions, controls))
        return real(self, captions, controls)
    monkeypatch.setattr(reference.ControlText, "__call__", counting)

    def spy(module, args, kwargs):
        if torch.is_grad_enabled() and type(kwargs["context"]).__name__ != "FakeTensor":   # not the pre-flight's
            contexts.append(kwargs["context"].detach().clone())
    handle = model.model.diffusion_model.register_forward_pre_hook(spy, with_kwargs=True)
    try:
        from test_edit_host import _bake
        result = _bake(model, clip, vae, dataset, "edit_qwen_vl", steps=4, batch=2)   # 2 epochs of 2 batches
    finally:
        handle.remove()
    assert len(result.result.losses) == 4 and np.isfinite([v for _, v in result.result.losses]).all()
    # each of the 4 pairs encoded once, with its control at the target's cut; the second epoch hits the cache
    assert len(encoded) == 4 and all(shapes == ((64, 64, 3),) for _, shapes in encoded), encoded
    with torch.inference_mode():
        plain = clip.encode_from_tokens_scheduled(clip.tokenize("make it red"))[0][0]
    assert len(contexts) == 4 and all(c.shape[0] == 2 and c.shape[1] > plain.shape[1] for c in contexts)
    # the two pairs of a batch show different controls to the vision tower: different conditioning
    assert all((c[0] - c[1]).abs().max() > 1e-5 for c in contexts)
    # the saved file, through LoraLoader, changes what the host's own Qwen edit nodes sample: the picture to the
    # vision tower by TextEncodeQwenImageEditPlus, its latent by ReferenceLatent (at 64 px: the node's own VAE input
    # would scale it to ~1 Mpx, minutes on a CPU)
    import nodes
    from comfy_extras.nodes_edit_model import ReferenceLatent
    from comfy_extras.nodes_qwen import TextEncodeQwenImageEditPlus
    rel = result.saved_files[-1].relative_to(host.loras_dir()).as_posix()
    picture = _picture((0.1, 0.2, 0.9))
    with torch.inference_mode():
        lm = nodes.LoraLoader().load_lora(model, clip, rel, 1.0, 0.0)[0]
        pos = TextEncodeQwenImageEditPlus.execute(clip, "make it red", None, picture).args[0]
        pos = ReferenceLatent.execute(pos, {"samples": vae.encode(picture).unsqueeze(2)})[0]
        outs = [nodes.KSampler().sample(m, 3, 3, 1.0, "euler", "simple", pos, pos,
                                        {"samples": torch.zeros(1, 16, 1, 8, 8)})[0]["samples"] for m in (model, lm)]
    assert (outs[0] - outs[1]).abs().max() > 1e-4, "the LoRA changed nothing in the host's edit output"


def test_training_samples_encode_the_prompt_with_its_picture(qwen_edit, tmp_path, monkeypatch):
    from kiln.core.net.spec import NetworkSpec
    from kiln.core.train.loop import TrainConfig
    from kiln.core.train.optim import OptimizerSpec
    from kiln.host import reference
    from kiln.host.bake import SaveSpec, bake
    from kiln.nodes.train import KilnSamplePrompts
    model, clip, vae = qwen_edit
    dataset = _dataset(_pairs(tmp_path, n=2), controls="auto")
    calls = []
    real = reference.encode_with_controls

    def spy(clip_, text, images):
        calls.append((text, [tuple(i.shape) for i in images]))
        return real(clip_, text, images)
    monkeypatch.setattr(reference, "encode_with_controls", spy)
    spec = KilnSamplePrompts.execute("make it blue --w 64 --h 64 --d 3 --s 2", "", 64, 64, 2, 1.0, 3, "euler",
                                     "simple", control_images=_picture((0.1, 0.9, 0.1), 48)).args[0]
    with torch.inference_mode():
        result = bake(model, clip, vae, dataset, NetworkSpec(rank=4, alpha=4.0), OptimizerSpec(lr=1e-3),
                      TrainConfig(max_steps=1, seed=0, probe_samples=0),
                      SaveSpec(output_name="edit_qwen_vl_samples", save_dtype="fp32", save_state=False), samples=spec)
    assert ("make it blue", [(1, 48, 48, 3)]) in calls
    assert len(result.report.samples) == 1 and np.isfinite(result.report.samples[0].image).all()


def test_text_encoder_training_goes_through_the_control_aware_encoding(qwen_edit, tmp_path, monkeypatch):
    """With train_text_encoder the captions are encoded every step (nothing cached), with their controls, and the text
    encoder's LoRA receives gradients through that encoding."""
    from kiln.core.net.spec import NetworkSpec
    from kiln.core.train.loop import TrainConfig
    from kiln.core.train.optim import OptimizerSpec
    from kiln.host import reference
    from kiln.host.bake import SaveSpec, bake
    from kiln.host.training import check_text_encoder_trainable
    model, clip, vae = qwen_edit
    try:
        check_text_encoder_trainable(clip)
    except ValueError as exc:      # the 2025-10 LoraLoader reads no Qwen2.5-VL LoRA keys: Kiln refuses to train it
        pytest.skip(f"this ComfyUI cannot load a trained Qwen2.5-VL LoRA: {exc}")
    dataset = _dataset(_pairs(tmp_path, n=2), controls="auto")
    calls = []
    real = reference.ControlText.__call__

    def counting(self, captions, controls):
        calls.append((torch.is_grad_enabled(), len(captions), len(controls[0])))
        return real(self, captions, controls)
    monkeypatch.setattr(reference.ControlText, "__call__", counting)
    with torch.inference_mode():
        result = bake(model, clip, vae, dataset, NetworkSpec(rank=4, alpha=4.0, train_text_encoder=True),
                      OptimizerSpec(lr=1e-3), TrainConfig(max_steps=2, batch_size=2, seed=0, probe_samples=0),
                      SaveSpec(output_name="edit_qwen_vl_te", save_dtype="fp32", save_state=False))
    assert len(result.result.losses) == 2
    # encoded at every step (and the pre-flight's trace), with gradients, never from a cache
    assert len(calls) >= 2 and all(c == (True, 2, 1) for c in calls), calls
    ups = [t for k, t in result.lora.tensors.items() if k.startswith("lora_te") and "lora_up" in k]
    assert ups and max(float(t.abs().max()) for t in ups) > 0, "the text encoder's LoRA did not train"
