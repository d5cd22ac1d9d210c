"""The edit templates (train_edit_kontext.json, train_edit_qwen.json, train_edit_flux2.json) pass the host's own prompt
validation, as on Queue, with empty files of the templates' model names: a paired dataset (controls auto) trains, and
the same edit of one picture is sampled with the base model and with the trained LoRA through the host's own
reference conditioning. A missing file is what the validation refuses."""
import pytest

from conftest import REPO
from test_families_host import TEMPLATE_FOLDERS, template_model_files

FOLDERS = dict(TEMPLATE_FOLDERS, clip_name1="text_encoders", clip_name2="text_encoders")


@pytest.mark.parametrize("name", ["train_edit_kontext", "train_edit_qwen", "train_edit_flux2"])
def test_edit_template_trains_pairs_and_compares_the_edit(name, host, tmp_path):
    import folder_paths
    import nodes as host_nodes
    from PIL import Image
    from cli import runner
    from kiln.cli.graphs import EDIT_CONTROL_IMAGE, TEMPLATES
    assert name in TEMPLATES
    import json
    path = REPO / "workflows" / f"{name}.json"
    lacking = {n["type"] for n in json.loads(path.read_text())["nodes"]} - set(host_nodes.NODE_CLASS_MAPPINGS) - {"Note"}
    if lacking:
        pytest.skip(f"this ComfyUI has no {', '.join(sorted(lacking))}")
    prompt = runner.load_workflow(path)
    picture = __import__("pathlib").Path(folder_paths.get_input_directory()) / EDIT_CONTROL_IMAGE
    Image.new("RGB", (64, 64), (200, 40, 40)).save(picture)
    try:
        with template_model_files(prompt, tmp_path, FOLDERS):
            to_run = runner.validate_prompt(prompt)
            broken = {k: dict(v, inputs=dict(v["inputs"])) for k, v in prompt.items()}
            loader = next(v for v in broken.values() if v["class_type"] == "UNETLoader")
            loader["inputs"]["unet_name"] = "not-there.safetensors"
            with pytest.raises(runner.WorkflowError, match="not-there"):
                runner.validate_prompt(broken)
    finally:
        picture.unlink(missing_ok=True)
    by_type = {}
    for k, v in prompt.items():
        by_type.setdefault(v["class_type"], []).append(k)
    train_id = by_type["KilnTrainLora"][0]
    data = prompt[by_type["KilnLoadDataset"][0]]["inputs"]
    assert data["controls"] == "auto" and prompt[train_id]["inputs"]["gradient_checkpointing"] is True
    assert data["control_resolution"] == ("family" if name == "train_edit_qwen" else "target")
    unet = by_type["UNETLoader"][0]
    models = sorted(prompt[k]["inputs"]["model"][0] for k in by_type["KSampler"])
    assert models == sorted([unet, train_id])                      # the base and the trained model, same edit
    positives = {tuple(prompt[k]["inputs"]["positive"]) for k in by_type["KSampler"]}
    assert len(positives) == 1
    # The positive carries the picture to edit the host's way: ReferenceLatent on its latent, or Qwen's edit encoder.
    reference = by_type.get("ReferenceLatent", []) + by_type.get("TextEncodeQwenImageEditPlus", [])
    assert len(reference) == 1
    inputs = prompt[reference[0]]["inputs"]
    source = inputs.get("image1") or prompt[inputs["latent"][0]]["inputs"]["pixels"]
    assert prompt[source[0]]["class_type"] == "LoadImage"
    assert sum(prompt[k]["class_type"] == "SaveImage" for k in to_run) >= 3     # loss, base edit, LoRA edit
