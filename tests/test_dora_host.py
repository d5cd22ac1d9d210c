"""Kiln's DoRA file through the host's own LoraLoader gives the model Kiln trained (its bypass forward with
the adapters attached), layer by layer through the whole UNet; the LyCORIS-convention file of the same LoRA
does not apply as trained in the host (what the README says about choosing the convention)."""
import numpy as np
import torch


def _unet_output(model, x, t, ctx):
    return model.model.diffusion_model(x, timesteps=t, context=ctx).float().cpu().numpy()


def test_lora_loader_applies_kilns_dora_file_as_kiln_trained_it(loaded, host, tmp_path):
    import comfy.model_management as mm
    import nodes
    from kiln.core.lora.io import save_lora
    from kiln.core.lora.value import KilnLora
    from kiln.core.net.network import Network
    from kiln.core.net.spec import NetworkSpec
    from kiln.core.tools.dora_convention import convert_dora
    from kiln.core.train.loop import TrainConfig
    from kiln.core.train.optim import OptimizerSpec
    from kiln.host.bake import SaveSpec, bake
    from kiln.host.training import target_layers
    model, clip, vae, dataset = loaded
    spec = NetworkSpec(algorithm="dora", dora=True, rank=4, alpha=4.0, conv_rank=4, conv_alpha=4.0, targets="full")
    with torch.inference_mode():
        result = bake(model, clip, vae, dataset, spec, OptimizerSpec(lr=1e-2, scheduler="constant"),
                      TrainConfig(max_steps=4, seed=0, probe_samples=0), SaveSpec(output_name="dora_host", save_dtype="fp32"))
    g = torch.Generator().manual_seed(0)
    x, ctx, t = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 77, 768, generator=g), torch.tensor([400.0])
    with torch.inference_mode():
        mm.load_models_gpu([model])   # the base weights, no patches
        base = _unet_output(model, x, t, ctx)
        layers = target_layers(model, None)
        net = Network(spec, layers)
        net.load_exported(result.lora.tensors)
        net.eval()
        with net:   # Kiln's own forward: the trained adapters hooked on the host's layers
            kiln = _unet_output(model, x, t, ctx)
        base_weights = {layer.kohya_name: layer.module.weight.detach().clone() for layer in layers
                        if layer.kohya_name in net.adapters}
    lycoris_file, _ = convert_dora(result.lora, base_weights, "lycoris")
    save_lora(KilnLora(lycoris_file.tensors, result.lora.metadata), host.loras_dir() / "dora_host_lycoris.safetensors")

    def through_lora_loader(name):
        with torch.inference_mode():
            patched, _ = nodes.LoraLoader().load_lora(model, clip, name, 1.0, 0.0)
            mm.load_models_gpu([patched])
            try:
                return _unet_output(patched, x, t, ctx)
            finally:
                mm.load_models_gpu([model])   # unpatched again for the next load
    default = through_lora_loader(result.saved_files[-1].relative_to(host.loras_dir()).as_posix())
    lycoris = through_lora_loader("dora_host_lycoris.safetensors")
    change = np.abs(kiln - base).max()
    assert change > 1e-3, "training changed nothing"
    gap = np.abs(default - kiln).max()
    assert gap <= 1e-3 * change, f"LoraLoader vs Kiln's forward {gap:.3g}, training changed {change:.3g}"
    # The host normalises an output-axis file by the ORIGINAL weight's norm: not the trained model.
    assert np.abs(lycoris - kiln).max() > 0.05 * change
