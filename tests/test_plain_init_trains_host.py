"""Issue 14's "all-zero LoRA" checkpoint trains: a tiny SD1.5-family checkpoint built with the host's classes
exactly as the report describes (UNet model_channels 320, channel_mult [1], num_res_blocks [1], transformer_depth
[1], transformer_depth_output [1, 1], transformer_depth_middle -2 (no middle block), context_dim 768,
use_linear_in_transformer False so proj_in/proj_out are 1x1 convs; every weight N(0, 0.02), norm weights 1, biases
0; TAESD VAE; a full random CLIP-L; stored fp16), loaded by the host's CheckpointLoaderSimple, trained 24 steps with
AdamW at lr 1e-3 and rank 8 on every Linear/Conv: the fixed-sample loss falls and every lora_up is non-zero."""
import json

import pytest
import torch


def _normal_init(module: torch.nn.Module, seed: int, std: float = 0.02) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for sub in module.modules():
            for leaf, p in sub.named_parameters(recurse=False):
                if isinstance(sub, (torch.nn.GroupNorm, torch.nn.LayerNorm)):
                    p.fill_(1.0 if leaf == "weight" else 0.0)
                elif leaf == "bias":
                    p.zero_()
                else:
                    p.copy_(torch.randn(p.shape, generator=g) * std)


def write_reported_checkpoint(path, zero_output: bool = False) -> None:
    import comfy.ops
    from comfy.clip_model import CLIPTextModel
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel
    from comfy.taesd.taesd import TAESD
    from safetensors.torch import save_file
    from kiln.host import COMFYUI_ROOT
    unet = UNetModel(image_size=32, in_channels=4, out_channels=4, model_channels=320, num_res_blocks=[1],
                     channel_mult=(1,), transformer_depth=[1], transformer_depth_output=[1, 1],
                     transformer_depth_middle=-2, context_dim=768, num_heads=8, use_spatial_transformer=True,
                     use_linear_in_transformer=False, legacy=False, operations=comfy.ops.disable_weight_init)
    assert unet.middle_block is None
    _normal_init(unet, 0)
    if zero_output:   # the UNet's output conv zeroed, as a zero_module init leaves it
        torch.nn.init.zeros_(unet.out[-1].weight)
    sd = {f"model.diffusion_model.{k}": v for k, v in unet.state_dict().items()}
    vae = TAESD()
    _normal_init(vae, 1)
    with torch.no_grad():
        vae.vae_scale.fill_(1.0)
        vae.vae_shift.fill_(0.0)
    sd.update({f"first_stage_model.{k}": v for k, v in vae.state_dict().items()})
    cfg = json.loads((COMFYUI_ROOT / "comfy" / "sd1_clip_config.json").read_text())
    clip = CLIPTextModel(cfg, dtype=torch.float32, device="cpu", operations=torch.nn)
    _normal_init(clip, 2)
    sd.update({f"cond_stage_model.transformer.{k}": v for k, v in clip.state_dict().items()
               if not k.startswith("text_projection")})
    sd["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(77).unsqueeze(0)
    save_file({k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in sd.items()}, str(path))


def _load(tiny_assets, folder, name, zero_output=False):
    import folder_paths
    import nodes
    from kiln.core.data import DatasetConfig, load_dataset
    # A test-run folder the host's checkpoint list also reads (the files are ~250 MB, mostly CLIP-L).
    folder_paths.add_model_folder_path("checkpoints", str(folder))
    write_reported_checkpoint(folder / name, zero_output)
    with torch.inference_mode():
        model, clip, vae = nodes.CheckpointLoaderSimple().load_checkpoint(name)[:3]
    assert model.model.diffusion_model.middle_block is None, "the host built a middle block the file does not have"
    assert type(model.model.model_config).__name__ == "SD15"
    dataset = load_dataset(DatasetConfig(path=str(tiny_assets.dataset_dir), resolution=64, min_bucket_reso=64,
                                         max_bucket_reso=64, bucket_reso_steps=64))
    return model, clip, vae, dataset


def _bake(loaded, targets, name):
    from kiln.core.net.spec import NetworkSpec
    from kiln.core.train.loop import TrainConfig
    from kiln.core.train.optim import OptimizerSpec
    from kiln.host.bake import SaveSpec, bake
    spec = NetworkSpec(rank=8, alpha=8.0, conv_rank=8, conv_alpha=8.0, targets=targets)
    with torch.inference_mode():
        return bake(*loaded, spec, OptimizerSpec(name="adamw", lr=1e-3, scheduler="constant"),
                    TrainConfig(max_steps=24, seed=0, probe_samples=8), SaveSpec(output_name=name, save_dtype="fp32"))


def test_the_reported_all_zero_checkpoint_trains(host, tiny_assets, tmp_path):
    result = _bake(_load(tiny_assets, tmp_path, "kiln-issue14-no-middle-block.safetensors"), "full", "issue14")
    start, end = result.result.probe_start, result.result.probe_end
    assert end < 0.9 * start, f"fixed-sample loss {start:.4f} -> {end:.4f}"
    ups = {k: v for k, v in result.lora.tensors.items() if k.endswith("lora_up.weight")}
    # Every Linear/Conv of this UNet is hooked (conv_in/out, time embedding, res blocks, 1x1 proj_in/out, attention,
    # feed-forward: 51 layers) and every one of them learned.
    assert len(ups) == 51 and any("proj_in" in k for k in ups) and any("conv_out" in k for k in ups)
    zero = [k for k, v in ups.items() if float(v.abs().max()) == 0.0]
    assert not zero, f"{len(zero)} of {len(ups)} lora_up still zero: {zero[:3]}"


def test_a_zero_output_conv_is_named_when_nothing_can_learn(host, tiny_assets, tmp_path):
    """The symptom the report describes (every lora_up exactly zero, a loss near 1.0 that never moves, while the
    host's own trainer, which adapts every weight, learns) appears with the same checkpoint once its output conv
    is zero: no gradient passes back through a zero layer, so only an adapter on that layer can start learning."""
    from kiln.core.train.guards import NoTrainingSignal
    loaded = _load(tiny_assets, tmp_path, "kiln-issue14-zero-out.safetensors", zero_output=True)
    with pytest.raises(NoTrainingSignal) as err:
        _bake(loaded, "attn_mlp", "issue14_zero_attn")
    msg = str(err.value)
    assert "no adapter parameter received a gradient in the first step" in msg
    assert "all-zero weight and no adapter (diffusion_model.out.2)" in msg and "targets 'full'" in msg
    result = _bake(loaded, "full", "issue14_zero_full")   # conv_out gets an adapter: it learns, then the rest
    assert result.result.probe_end < result.result.probe_start
    ups = [v for k, v in result.lora.tensors.items() if k.endswith("lora_up.weight")]
    assert len(ups) == 51 and all(float(u.abs().max()) > 0 for u in ups)
