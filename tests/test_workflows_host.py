"""Every shipped workflow runs headless through the host's executor (as `python -m kiln run` does) and
produces what it promises."""
import json
import logging

import pytest
import torch

from conftest import REPO
from tiny_tagger import write_tiny_tagger


@pytest.fixture(scope="module")
def demo_lora(host, tiny_assets):
    from cli import runner
    if not (host.loras_dir() / "kiln_demo.safetensors").is_file():
        assert runner.run_workflow(REPO / "workflows" / "train_then_sample.json").success
    # The tag workflow names a real tagger; a tiny local stand-in under that name is found before any download.
    write_tiny_tagger(host.register_model_folder("wd14_tagger", "wd14_tagger", {".onnx", ".csv"}),
                      name="wd-v1-4-moat-tagger-v2", size=32)
    return host.loras_dir() / "kiln_demo.safetensors"


def _run(name):
    from cli import runner
    result = runner.run_workflow(REPO / "workflows" / f"{name}.json")
    assert result.success, result.error
    return result


def test_tag_filter_train(demo_lora):
    """The shipped tag workflow, with the tiny tagger's threshold lowered so that it produces every tag the
    filter removes or replaces: the filter's work shows only if those tags were there before."""
    from kiln.core.lora.io import load_lora_file
    from cli import runner
    import kiln.host as h
    prompt = runner.load_workflow(REPO / "workflows" / "tag_filter_train.json")
    tagger = next(k for k, v in prompt.items() if v["class_type"] == "KilnTagger")
    prompt[tagger]["inputs"]["general_threshold"] = 0.05
    result = runner.run_prompt(prompt)
    assert result.success, result.error
    # The tagger's text is one "<image>: tag, tag, ..." line per image.
    before = {t for line in result.outputs[tagger]["text"][0].splitlines()
              for t in line.split(": ", 1)[-1].split(", ")}
    assert {"solo", "red dress"} <= before, sorted(before)
    lora = load_lora_file(h.loras_dir() / "kiln_tagged.safetensors")
    freq = json.loads(lora.metadata["ss_tag_frequency"])
    tags = {t for d in freq.values() for t in d}
    assert "kiln shapes" in tags and "solo" not in tags, sorted(tags)
    assert "zyxdress" in tags and "red dress" not in tags, sorted(tags)


def test_caption_filter_train(demo_lora, host):
    """Tagger -> captioner (a tiny random Florence-2 under the graph's model name) combining tags and
    caption -> filter with the trigger -> training: the trained captions hold all three."""
    from tiny_tagger import TAGS
    from tiny_vlm import write_tiny_vlm
    llm = host.register_model_folder("LLM", "LLM", {".safetensors", ".json"})
    write_tiny_vlm(llm / "Florence-2-base", "florence2")
    result = _run("caption_filter_train")
    from kiln.core.lora.io import load_lora_file
    lora = load_lora_file(host.loras_dir() / "kiln_captioned.safetensors")
    freq = json.loads(lora.metadata["ss_tag_frequency"])
    tags = {t for d in freq.values() for t in d}
    known = {t.replace("_", " ") for t, _ in TAGS}
    assert "kiln shapes" in tags and "solo" not in tags and tags & known
    assert tags - known - {"kiln shapes"}, "no caption text beside the tags"
    captions = [o["text"][0] for o in result.outputs.values() if o.get("text") and "shape_00" in o["text"][0]]
    assert captions and all(line.split(": ", 1)[1] for line in captions[0].splitlines())


def test_resize_and_merge(demo_lora):
    import kiln.host as h
    from kiln.core.lora.io import load_lora_file
    _run("resize")
    resized = load_lora_file(h.loras_dir() / "kiln_demo_r4.safetensors")
    assert resized.metadata["ss_network_dim"] == "4"
    assert all(t.shape[0] == 4 for k, t in resized.tensors.items() if k.endswith("lora_down.weight"))
    result = _run("merge")
    text = [o["text"][0] for o in result.outputs.values() if o.get("text")]
    assert any("mean cosine" in t for t in text)


def test_extract_recovers_the_demo_lora(demo_lora):
    result = _run("extract")
    from kiln.core.lora.io import load_lora_file
    from kiln.core.tools.lora_info import compare_loras
    import kiln.host as h
    extracted = load_lora_file(h.loras_dir() / "kiln_demo_extracted.safetensors")
    rows = [r for r in compare_loras(load_lora_file(demo_lora), extracted) if r.cosine is not None]
    assert rows and min(r.cosine for r in rows) > 0.99, min(r.cosine for r in rows)


def test_train_then_sample_saves_the_sample_timeline(demo_lora, host):
    """The Sample Timeline node's image reaches Save Image headless: two prompt rows, one column per sample
    step (every 10 of 30 steps), each cell holding a sample."""
    import numpy as np
    from PIL import Image
    files = sorted(host.output_dir().glob("kiln_demo_timeline*.png"))
    assert files, "train_then_sample saved no timeline image"
    img = np.asarray(Image.open(files[-1]).convert("RGB"), dtype=np.float32) / 255
    cell, pad, label_w, head_h = 96, 4, 150, 22
    assert img.shape == (head_h + 2 * (cell + pad) + pad, label_w + 3 * (cell + pad) + pad, 3)
    for row in range(2):
        for col in range(3):
            y, x = head_h + pad + row * (cell + pad), label_w + pad + col * (cell + pad)
            tile = img[y:y + cell, x:x + cell]
            assert np.abs(tile - np.array([17, 17, 17]) / 255).max() > 0.1, (row, col)   # not the empty cell


def test_shipped_workflows_match_the_current_nodes(host):
    """Widget values are positional in UI-format files: a node that gains an input must regenerate them
    (python -m cli.make_workflows), or the files would feed values to the wrong inputs."""
    import nodes as host_nodes
    from kiln.cli.graphs import GRAPHS
    from kiln.cli.make_workflows import to_ui
    compared = 0
    for name, graph in GRAPHS.items():
        if {n["type"] for n in graph} - set(host_nodes.NODE_CLASS_MAPPINGS) - {"Note"}:
            continue   # a template for nodes this ComfyUI lacks (LTX-2, FLUX.2 on the 2025-10 host)
        compared += 1
        fresh = to_ui(graph, host_nodes.NODE_CLASS_MAPPINGS)
        shipped = json.loads((REPO / "workflows" / f"{name}.json").read_text())
        assert [n["widgets_values"] for n in fresh["nodes"]] == [n["widgets_values"] for n in shipped["nodes"]], name
        assert fresh["links"] == shipped["links"], name
    assert compared >= len(GRAPHS) - 3, f"only {compared} of {len(GRAPHS)} workflows compared"


def test_cli_run_command_runs_a_shipped_workflow(demo_lora, capsys):
    """`python -m kiln run workflows/<name>.json`, the CLI path itself (argument parsing, boot, report)."""
    from kiln.cli import main as cli
    import kiln.host as h
    target = h.loras_dir() / "kiln_demo_r4.safetensors"
    target.unlink(missing_ok=True)
    assert cli.main(["run", str(REPO / "workflows" / "resize.json")]) == 0
    out = capsys.readouterr().out
    assert "done in" in out and target.is_file(), out
