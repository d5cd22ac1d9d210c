"""The video templates (train_video_wan22.json, train_video_ltx2.json) pass the host's own prompt validation, as on
Queue, with empty files of the templates' names in the model folders: Wan 2.2's two experts feed one Train node
(model, model_low_noise) whose two LoRAs are saved and whose two MODELs sample in turn; LTX-2 trains on clips in
8k+1-frame windows. A missing file is what the validation refuses."""
import pytest

from conftest import REPO
from test_families_host import HOST_2026, TEMPLATE_FOLDERS, template_model_files

FOLDERS = dict(TEMPLATE_FOLDERS, text_encoder="text_encoders")


def _validated(name, tmp_path):
    from cli import runner
    prompt = runner.load_workflow(REPO / "workflows" / f"{name}.json")
    with template_model_files(prompt, tmp_path, FOLDERS):
        to_run = runner.validate_prompt(prompt)
        broken = {k: dict(v, inputs=dict(v["inputs"])) for k, v in prompt.items()}
        loader = next(v for v in broken.values() if v["class_type"] in ("UNETLoader", "CheckpointLoaderSimple"))
        loader["inputs"]["unet_name" if "unet_name" in loader["inputs"] else "ckpt_name"] = "not-there.safetensors"
        with pytest.raises(runner.WorkflowError, match="not-there"):
            runner.validate_prompt(broken)
    return prompt, to_run


def test_wan22_template_trains_both_experts_and_samples_with_each(host, tmp_path):
    prompt, to_run = _validated("train_video_wan22", tmp_path)
    by_id = {k: v for k, v in prompt.items()}
    train_id, train = next((k, v["inputs"]) for k, v in by_id.items() if v["class_type"] == "KilnTrainLora")
    unets = {k: v["inputs"]["unet_name"] for k, v in by_id.items() if v["class_type"] == "UNETLoader"}
    assert "high_noise" in unets[train["model"][0]] and "low_noise" in unets[train["model_low_noise"][0]]
    assert train["expert_boundary"] == 0.875 and train["gradient_checkpointing"] is True
    saves = {v["inputs"]["filename"]: v["inputs"]["lora"] for v in by_id.values() if v["class_type"] == "KilnSaveLora"}
    assert saves == {"kiln_wan22_high_noise": [train_id, 2], "kiln_wan22_low_noise": [train_id, 6]}
    samplers = sorted((v["inputs"]["start_at_step"], v["inputs"]["model"]) for v in by_id.values()
                      if v["class_type"] == "KSamplerAdvanced")
    assert samplers == [(0, [train_id, 0]), (10, [train_id, 5])]
    data = next(v["inputs"] for v in by_id.values() if v["class_type"] == "KilnLoadDataset")
    assert (data["frame_extraction"], data["target_frames"]) == ("uniform", 33)
    assert any(by_id[k]["class_type"] == "SaveAnimatedWEBP" for k in to_run)


def test_ltx2_template_trains_on_clips(host, tmp_path):
    if not HOST_2026:
        pytest.skip("the 2025-10 host has no LTX-2 (LTXAVTextEncoderLoader)")
    prompt, to_run = _validated("train_video_ltx2", tmp_path)
    types = {v["class_type"] for v in prompt.values()}
    assert {"LTXAVTextEncoderLoader", "EmptyLTXVLatentVideo", "SaveAnimatedWEBP"} <= types
    data = next(v["inputs"] for v in prompt.values() if v["class_type"] == "KilnLoadDataset")
    assert (data["target_frames"] - 1) % 8 == 0 and data["target_fps"] == 24.0
