"""Kiln's nodes on ComfyUI's V3 API: registered under their classic ids in both hosts, defaults read off the
config dataclasses' fields, rarely changed inputs marked advanced where the host's inputs take the flag, and
workflows saved before the move (tests/assets/workflows_0dbf367, the shipped files of commit 0dbf367) still
convert to the same inputs and run."""
import dataclasses
import json
from pathlib import Path

import pytest

from conftest import REPO

OLD = Path(__file__).parent / "assets" / "workflows_0dbf367"
OLD_FILES = sorted(OLD.glob("*.json"))
NODE_FILES = sorted((REPO / "nodes").glob("*.py"))


@pytest.mark.parametrize("path", NODE_FILES, ids=[p.name for p in NODE_FILES])
def test_node_lines_fit_in_120_characters(path):
    long = [i for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if len(line) > 120]
    assert not long, f"{path.relative_to(REPO)}: lines {long} are over 120 characters; wrap them"


@pytest.mark.parametrize("path", NODE_FILES, ids=[p.name for p in NODE_FILES])
def test_nodes_do_not_reach_into_models(path):
    """Model internals (state dicts, the diffusion model or text encoder behind a patcher) belong in host/."""
    text = path.read_text(encoding="utf-8")
    for internal in ("state_dict(", ".model.model", "cond_stage_model", "model.model."):
        assert internal not in text, f"{path.relative_to(REPO)} reads {internal!r}; move that code to host/"


def _pack_nodes():
    from kiln import nodes as pack_nodes
    return pack_nodes


def test_every_node_is_a_v3_node_under_its_classic_id(host):
    from comfy_api.latest import io
    import nodes as host_nodes
    pack = _pack_nodes()
    old_ids = {n["type"] for f in OLD_FILES for n in json.loads(f.read_text())["nodes"] if n["type"].startswith("Kiln")}
    assert old_ids <= set(pack.NODE_CLASS_MAPPINGS), sorted(old_ids - set(pack.NODE_CLASS_MAPPINGS))
    assert len(pack.NODE_CLASS_MAPPINGS) >= 22
    for node_id, cls in pack.NODE_CLASS_MAPPINGS.items():
        assert issubclass(cls, io.ComfyNode), node_id
        assert cls.GET_SCHEMA().node_id == node_id and host_nodes.NODE_CLASS_MAPPINGS[node_id] is cls
        info = cls.GET_NODE_INFO_V1()   # what the server's /object_info sends the frontend
        assert info["display_name"].startswith("Kiln ") and info["category"].startswith("Kiln/"), node_id
        for section in ("required", "optional"):
            for name, spec in (info["input"].get(section) or {}).items():
                assert spec[1].get("tooltip"), f"{node_id}.{name} has no tooltip"


# Node input -> (config dataclass, field): the inputs whose default, limits and tooltip the field owns.
def _field_inputs():
    from kiln.core.data.config import DatasetConfig
    from kiln.core.net.spec import NetworkSpec
    from kiln.core.train.loop import TrainConfig
    from kiln.core.train.objective import ObjectiveSpec
    from kiln.core.train.optim import OptimizerSpec
    from kiln.core.train.sample_prompts import SamplePrompt
    from kiln.core.train.specs import SaveSpec
    renamed = {"KilnTrainLora": {"gradient_accumulation": "grad_accum"},
               "KilnNetworkConfig": {"lokr_factor": "factor", "seed": "init_seed"},
               "KilnOptimizerConfig": {"optimizer": "name", "learning_rate": "lr"}}
    configs = {"KilnTrainLora": (TrainConfig, SaveSpec), "KilnNetworkConfig": (NetworkSpec,),
               "KilnOptimizerConfig": (OptimizerSpec,), "KilnTrainingObjective": (ObjectiveSpec,),
               "KilnLoadDataset": (DatasetConfig,), "KilnSamplePrompts": (SamplePrompt,)}
    return renamed, configs


def test_input_defaults_limits_and_tooltips_come_from_the_config_fields(host):
    pack = _pack_nodes()
    renamed, configs = _field_inputs()
    checked = 0
    for node_id, owners in configs.items():
        inputs = pack.NODE_CLASS_MAPPINGS[node_id].INPUT_TYPES()
        for section in ("required", "optional"):
            for name, (_, opts) in (inputs.get(section) or {}).items():
                field_name = renamed.get(node_id, {}).get(name, name)
                for config in owners:
                    field = {f.name: f for f in dataclasses.fields(config)}.get(field_name)
                    if field is None or "help" not in field.metadata:
                        continue
                    if isinstance(field.default, (bool, int, float, str)):   # not the text form of a tuple
                        assert opts["default"] == field.default, (node_id, name)
                    assert opts["tooltip"] == field.metadata["help"], (node_id, name)
                    for limit in ("min", "max", "step"):
                        if limit in field.metadata:
                            assert opts[limit] == field.metadata[limit], (node_id, name, limit)
                    checked += 1
    assert checked >= 70, checked


def test_advanced_inputs_are_marked_where_the_host_takes_the_flag(host):
    """The 2026 host's inputs take ``advanced`` (its frontend folds them away); the 2025-10 host's do not, and
    there the schema must still build (every input simply shows)."""
    from comfy_api.latest import io
    from kiln.nodes.schema import takes_advanced
    pack = _pack_nodes()
    supported = takes_advanced(io.Float)
    train = pack.NODE_CLASS_MAPPINGS["KilnTrainLora"].INPUT_TYPES()
    flags = {name: bool(spec[1].get("advanced")) for s in ("required", "optional")
             for name, spec in train[s].items()}
    short_path = {"output_name", "epochs", "max_steps", "batch_size", "network", "optimizer", "dataset", "model"}
    assert not any(flags[n] for n in short_path), flags
    rare = {"ema_decay", "validation_split", "vram_preset", "resume_from", "save_dtype", "keep_last",
            "checkpoint_depth"}
    assert all(flags[n] == supported for n in rare), (supported, flags)
    network = pack.NODE_CLASS_MAPPINGS["KilnNetworkConfig"].INPUT_TYPES()
    assert bool(network["optional"]["dropout"][1].get("advanced")) == supported
    assert not network["required"]["rank"][1].get("advanced") and not network["required"]["alpha"][1].get("advanced")


@pytest.mark.parametrize("path", OLD_FILES, ids=[p.stem for p in OLD_FILES])
def test_workflows_saved_before_v3_convert_to_the_same_inputs(host, path):
    """The UI->API conversion reads each node's inputs from the V3 schema; it must give the API form the classic
    nodes gave these files (recorded in api/ by commit 0dbf367's code)."""
    from cli import runner
    expected = json.loads((OLD / "api" / path.name).read_text())
    assert runner.load_workflow(path) == expected


@pytest.fixture(scope="module")
def old_demo(host, tiny_assets):
    from cli import runner
    result = runner.run_workflow(OLD / "train_then_sample.json")
    assert result.success, result.error
    return result


def test_the_old_train_then_sample_runs_on_the_v3_nodes(old_demo, host):
    from kiln.core.lora.io import load_lora_file
    lora = load_lora_file(host.loras_dir() / "kiln_demo.safetensors")
    assert lora.modules and lora.metadata["ss_output_name"] == "kiln_demo"
    recorded = json.loads((OLD / "api" / "train_then_sample.json").read_text())
    train = next(k for k, v in recorded.items() if v["class_type"] == "KilnTrainLora")
    assert len(old_demo.outputs[train]["kiln_loss"][0]["loss"]) == recorded[train]["inputs"]["max_steps"] == 30


@pytest.mark.parametrize("name", ["resize", "merge", "extract"])
def test_old_lora_tool_workflows_run_on_the_v3_nodes(old_demo, name):
    from cli import runner
    result = runner.run_workflow(OLD / f"{name}.json")
    assert result.success, result.error
