"""Host-free: the sample timeline grid, the loss plot's validation line, and the shipped workflows' layout
(no two nodes overlap, every node in one ComfyUI group, a Note that the runner's conversion skips)."""
import json

import numpy as np
import pytest
from PIL import Image

from conftest import REPO
from kiln.cli.make_workflows import TITLE, node_boxes, overlaps
from kiln.core.plots.loss_chart import loss_plot
from kiln.core.plots.timeline import (TimelineEntry, load_entries, parse_sample_file, sample_file_name,
                                           timeline_image)
from kiln.core.workflow import ui_to_api

COLOURS = {(10, 0): (1.0, 0.0, 0.0), (10, 1): (0.0, 1.0, 0.0), (20, 0): (0.0, 0.0, 1.0), (20, 1): (1.0, 1.0, 0.0)}


def _entries():
    return [TimelineEntry(step, prompt, np.ones((16, 16, 3), np.float32) * np.array(c, np.float32))
            for (step, prompt), c in COLOURS.items()]


def test_timeline_puts_each_prompt_on_a_row_and_each_step_in_a_column():
    cell = 40
    img = timeline_image(_entries(), ["a red thing", "a green thing"], cell=cell)
    label_w, head_h, pad = 150, 22, 4
    assert img.shape == (head_h + 2 * (cell + pad) + pad, label_w + 2 * (cell + pad) + pad, 3)
    for (step, prompt), colour in COLOURS.items():
        col = [10, 20].index(step)
        y = head_h + pad + prompt * (cell + pad) + cell // 2
        x = label_w + pad + col * (cell + pad) + cell // 2
        assert np.allclose(img[y, x], colour, atol=0.01), (step, prompt, img[y, x])
    # step labels drawn above the columns (text pixels brighter than the background)
    assert img[:head_h, label_w:].max() > 0.5


def test_timeline_keeps_the_first_and_latest_steps():
    entries = [TimelineEntry(s, 0, np.full((4, 4, 3), s / 100, np.float32)) for s in range(10, 100, 10)]
    img = timeline_image(entries, ["p"], cell=20, max_columns=3)
    assert img.shape[1] == 150 + 3 * 24 + 4
    centres = [img[22 + 4 + 10, 150 + 4 + c * 24 + 10, 0] for c in range(3)]
    assert np.allclose(centres, [0.1, 0.8, 0.9], atol=0.01)


def test_timeline_reads_sample_files_and_skips_missing_ones(tmp_path):
    name = sample_file_name(30, 1)
    assert parse_sample_file(name) == (30, 1) and parse_sample_file("timeline.png") is None
    Image.new("RGB", (8, 8), (255, 0, 0)).save(tmp_path / name)
    from kiln.core.train.specs import SampleRecord
    entries = load_entries([SampleRecord(30, 1, tmp_path / name, np.zeros((8, 8, 3))),
                            SampleRecord(40, 1, tmp_path / "gone.png", np.zeros((8, 8, 3)))])
    assert [(e.step, e.prompt) for e in entries] == [(30, 1)]
    assert np.allclose(entries[0].image[0, 0], [1, 0, 0])
    assert timeline_image([], []).shape[2] == 3   # empty: a readable placeholder, not an error


def test_loss_plot_draws_the_validation_line():
    points = [(s, 1.0 / s) for s in range(1, 51)]
    plain = loss_plot(points)
    both = loss_plot(points, validation=[(10, 0.5), (20, 0.6), (30, 0.7)])
    orange = lambda im: int(((im[..., 0] > 0.8) & (im[..., 1] > 0.35) & (im[..., 1] < 0.6) & (im[..., 2] < 0.2)).sum())
    assert orange(plain) == 0 and orange(both) > 50


WORKFLOWS = sorted((REPO / "workflows").glob("*.json"))


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_shipped_workflow_layout(path):
    ui = json.loads(path.read_text())
    assert overlaps(node_boxes(ui)) == [], path.name
    groups = ui["groups"]
    assert len(groups) >= 3
    assert overlaps([(g["title"], *g["bounding"]) for g in groups]) == []
    notes = [n for n in ui["nodes"] if n["type"] == "Note"]
    assert len(notes) == 1 and "Change first" in notes[0]["widgets_values"][0]
    for n in ui["nodes"]:
        if n["type"] == "Note":
            continue
        x, y, w, h = n["pos"][0], n["pos"][1] - TITLE, n["size"][0], n["size"][1] + TITLE
        inside = [g["title"] for g in groups if g["bounding"][0] <= x and x + w <= g["bounding"][0] + g["bounding"][2]
                  and g["bounding"][1] <= y and y + h <= g["bounding"][1] + g["bounding"][3]]
        assert len(inside) == 1, (path.name, n["type"], inside)
    # the runner's UI->API conversion leaves the Note out (the executor has no such node)
    api = ui_to_api(ui, lambda t: {"required": {}} if t != "Note" else None)
    assert "Note" not in {v["class_type"] for v in api.values()}
    assert len(api) == len(ui["nodes"]) - 1


def test_train_workflows_have_the_four_groups():
    for name in ("train_then_sample", "tag_filter_train"):
        ui = json.loads((REPO / "workflows" / f"{name}.json").read_text())
        assert [g["title"] for g in ui["groups"]] == ["Dataset", "Network and optimizer", "Train", "Check the result"]


def test_overlap_check_can_fail():
    assert overlaps([("a", 0, 0, 100, 100), ("b", 99, 99, 10, 10), ("c", 100, 0, 5, 5)]) == [("a", "b")]


def test_live_history_keeps_every_sample_step_and_the_validation_line(host):
    """What a reloaded page redraws from: all sample steps (not just the latest) and the validation losses."""
    from kiln.host import live
    live.start("kiln-test-node", 20, "x")
    for step in (10, 20):
        live.step("kiln-test-node", step, 20, 1.0 / step, 1)
        live.validation("kiln-test-node", step, 0.5 / step)
        live.samples("kiln-test-node", [{"filename": f"step{step:06d}_{p:02d}.png", "subfolder": "kiln_samples/x",
                                         "type": "output", "step": step, "prompt": p} for p in (0, 1)], ["a", "b"])
    live.finish("kiln-test-node")
    runs = [h for h in live.history().values() if h["node"] == "kiln-test-node"]
    assert len(runs) == 1
    h = runs[0]
    assert h["validation"] == [[10, 0.05], [20, 0.025]]
    assert [(r["step"], r["prompt"]) for r in h["samples"]] == [(10, 0), (10, 1), (20, 0), (20, 1)]
    assert h["prompts"] == ["a", "b"] and h["running"] is False
    # A new run of the same node is kept apart (by prompt id + node id): the last run's chart survives it.
    live.start("kiln-test-node", 5, "y")
    live.step("kiln-test-node", 1, 5, 0.3, 0)
    runs = sorted((h for h in live.history().values() if h["node"] == "kiln-test-node"), key=lambda h: h["started"])
    assert [r["name"] for r in runs] == ["x", "y"] and len({r["run"] for r in runs}) == 2
    assert runs[0]["points"] == [[10, 0.1], [20, 0.05]] and runs[1]["points"] == [[1, 0.3]]
