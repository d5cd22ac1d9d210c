"""The training recipe of a graph: its Train node and what feeds it, read from the API-format prompt.

Pure data work on the prompt (class types and input values; links are ``[node id, slot]``): values not
in the prompt take the node defaults, which are the core specs' defaults. Paths are resolved by the
caller (the host knows ComfyUI's folders), so this stays free of host imports."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable

from ..data.config import DatasetConfig, parse_color
from ..net.spec import NetworkSpec
from ..train.loop import TrainConfig
from ..train.objective import ObjectiveSpec
from ..train.optim import OptimizerSpec
from ..train.presets import apply_network_size, apply_vram_class

TRAIN_NODE = "KilnTrainLora"
DATASET_NODE = "KilnLoadDataset"

# Families as host.families names them (the model class the host detected).
FAMILIES = ("sd1", "sd2", "sdxl", "sd3", "flux1-dev", "flux1-schnell", "chroma", "flux2", "qwen-image",
            "z-image", "lumina2", "wan", "hidream", "hunyuan-video-1.5", "ltx2")

# Model loaders: class type -> (input name, kind of model file, role in the recipe's model_files).
LOADERS = {
    "CheckpointLoaderSimple": [("ckpt_name", "checkpoints", "checkpoint")],
    "CheckpointLoader": [("ckpt_name", "checkpoints", "checkpoint")],
    "UNETLoader": [("unet_name", "diffusion_models", "diffusion_model")],
    "UnetLoaderGGUF": [("unet_name", "diffusion_models", "diffusion_model")],
    "CLIPLoader": [("clip_name", "text_encoders", "text_encoder")],
    "DualCLIPLoader": [("clip_name1", "text_encoders", "text_encoder"), ("clip_name2", "text_encoders", "text_encoder_2")],
    "TripleCLIPLoader": [("clip_name1", "text_encoders", "text_encoder"), ("clip_name2", "text_encoders", "text_encoder_2"),
                         ("clip_name3", "text_encoders", "text_encoder_3")],
    "VAELoader": [("vae_name", "vae", "vae")],
}


class ExportError(ValueError):
    pass


@dataclass(frozen=True)
class ExportRecipe:
    family: str
    output_name: str
    train: TrainConfig
    dataset: DatasetConfig
    network: NetworkSpec
    optimizer: OptimizerSpec
    model_files: dict = field(default_factory=dict)   # role -> resolved path (checkpoint, vae, text_encoder ...)
    save_dtype: str = "fp16"
    keep_last: int = 3
    resume_from: str = ""
    cache_latents_to_disk: bool = False
    sample_prompts: tuple = ()                         # kohya prompt lines
    expert: str = "none"                               # Wan 2.2 A14B: none, high_noise, low_noise (core.train.experts)
    expert_boundary: float = 0.875                     # the noise level where the experts switch
    notes: tuple = ()                                  # what does not carry over, for the report


def _is_link(v) -> bool:
    """A link in the API format: [source node id (a string), output slot]."""
    return isinstance(v, (list, tuple)) and len(v) == 2 and isinstance(v[0], str) and isinstance(v[1], int)


def _fields(cls, values: dict, rename: dict | None = None) -> dict:
    rename = rename or {}
    names = {f.name for f in dataclasses.fields(cls)}
    out = {}
    for k, v in values.items():
        k = rename.get(k, k)
        if k in names and not _is_link(v):
            out[k] = v
    return out


def _node(prompt: dict, link, what: str) -> tuple[str, dict]:
    node_id = str(link[0])
    if node_id not in prompt:
        raise ExportError(f"the {what} input points at node {node_id}, which is not in the workflow")
    return node_id, prompt[node_id]


def _ancestor(prompt: dict, link, wanted: set, via: tuple, seen=None) -> dict | None:
    """The first node of a wanted class found walking up from ``link`` through the inputs named ``via``
    (e.g. a dataset through Tag Filter nodes, a MODEL through LoraLoader / ModelSampling nodes)."""
    seen = seen if seen is not None else set()
    node_id, node = str(link[0]), prompt.get(str(link[0]))
    if node is None or node_id in seen:
        return None
    seen.add(node_id)
    if node["class_type"] in wanted:
        return node
    for name, v in node.get("inputs", {}).items():
        if name in via and _is_link(v):
            found = _ancestor(prompt, v, wanted, via, seen)
            if found is not None:
                return found
    return None


def find_train_node(prompt: dict, train_node: str | None = None) -> str:
    ids = [k for k, n in prompt.items() if n.get("class_type") == TRAIN_NODE]
    if train_node is not None:
        if str(train_node) not in ids:
            raise ExportError(f"node {train_node} is not a Kiln Train LoRA node; the workflow's are {ids or 'none'}")
        return str(train_node)
    if not ids:
        raise ExportError("the workflow has no Kiln Train LoRA node (muted nodes are left out): add one, or unmute it")
    if len(ids) > 1:
        raise ExportError(f"the workflow has {len(ids)} Kiln Train LoRA nodes ({', '.join(ids)}); name one "
                          "(the Export node's train_node input, or --train-node)")
    return ids[0]


def recipe_from_prompt(prompt: dict, family: str, train_node: str | None = None,
                       resolve_input: Callable[[str], str] = lambda p: p,
                       resolve_model: Callable[[str, str], str] = lambda kind, name: name) -> ExportRecipe:
    """The recipe of the prompt's Train node. ``resolve_input`` turns the dataset path into an absolute one
    (relative paths are read from ComfyUI's input folder); ``resolve_model(kind, name)`` a model file name
    into its path ("checkpoints", "diffusion_models", "text_encoders", "vae")."""
    tid = find_train_node(prompt, train_node)
    t = prompt[tid].get("inputs", {})
    notes: list[str] = []
    network, optimizer, train = _training_specs(prompt, t, notes)
    if family not in FAMILIES:
        notes.append(f"family {family!r} is not one Kiln knows; only generic settings are written")
    return ExportRecipe(family=family, output_name=str(t.get("output_name", "kiln_lora")), train=train,
                        dataset=_dataset_config(prompt, t, notes, resolve_input), network=network,
                        optimizer=optimizer, model_files=_model_files(prompt, t, resolve_model),
                        save_dtype=str(t.get("save_dtype", "fp16")), keep_last=int(t.get("keep_last", 3)),
                        resume_from=str(t.get("resume_from", "") or ""),
                        cache_latents_to_disk=bool(t.get("cache_latents_to_disk", False)),
                        sample_prompts=_sample_prompts(prompt, t), notes=tuple(notes),
                        expert=str(t.get("expert", "none")), expert_boundary=float(t.get("expert_boundary", 0.875)))


def _config_inputs(prompt: dict, t: dict, name: str, class_type: str, notes: list) -> dict:
    """The inputs of the config node wired into the Train node's ``name`` input ({} when absent or foreign)."""
    link = t.get(name)
    if link is None:
        return {}
    _, node = _node(prompt, link, name)
    if node["class_type"] != class_type:
        notes.append(f"the {name} input comes from {node['class_type']}, not {class_type}: defaults used")
        return {}
    return node.get("inputs", {})


def _training_specs(prompt: dict, t: dict, notes: list) -> tuple[NetworkSpec, OptimizerSpec, TrainConfig]:
    """Network, optimizer and loop settings as the nodes build them (presets applied), so the export trains what
    Kiln would."""
    n = _config_inputs(prompt, t, "network", "KilnNetworkConfig", notes)
    network = NetworkSpec(**_fields(NetworkSpec, n, {"lokr_factor": "factor", "seed": "init_seed"}))
    if isinstance(n.get("size_preset"), str):
        network = apply_network_size(network, n["size_preset"])
    if network.algorithm == "dora":
        network = network.replace(dora=True)
    o = _config_inputs(prompt, t, "optimizer", "KilnOptimizerConfig", notes)
    optimizer = OptimizerSpec(**_fields(OptimizerSpec, o, {"optimizer": "name", "learning_rate": "lr"}))
    objective = ObjectiveSpec(**_fields(ObjectiveSpec, _config_inputs(prompt, t, "objective",
                                                                      "KilnTrainingObjective", notes)))
    train = TrainConfig(**_fields(TrainConfig, t, {"gradient_accumulation": "grad_accum"}))
    train = dataclasses.replace(train, objective=objective)
    if isinstance(t.get("vram_preset"), str):
        train = apply_vram_class(train, t["vram_preset"])
    return network, optimizer, train


def _dataset_config(prompt: dict, t: dict, notes: list, resolve_input: Callable[[str], str]) -> DatasetConfig:
    if not _is_link(t.get("dataset")):
        raise ExportError("the Train node's dataset input is not connected")
    d_node = _ancestor(prompt, t["dataset"], {DATASET_NODE}, ("dataset",))
    if d_node is None:
        raise ExportError("no Kiln Load Dataset node feeds the Train node's dataset; the trainers read folders, "
                          "so the dataset must come from one")
    _, first = _node(prompt, t["dataset"], "dataset")
    if first["class_type"] != DATASET_NODE:
        notes.append(f"the dataset passes through {first['class_type']} in the graph; the trainers read the "
                     "captions on disk (write them there first, e.g. the tagger's caption_mode)")
    d = dict(d_node.get("inputs", {}))
    if not d.get("path"):
        raise ExportError("the Kiln Load Dataset node has no path")
    d["path"] = resolve_input(d["path"])
    if d.get("reg_path"):
        d["reg_path"] = resolve_input(d["reg_path"])
    if "background" in d and not _is_link(d["background"]):
        d["background"] = parse_color(d["background"])
    return DatasetConfig(**_fields(DatasetConfig, d))


def _model_files(prompt: dict, t: dict, resolve_model: Callable[[str, str], str]) -> dict:
    """role (model / clip / vae) -> file path, read off the loader nodes upstream of the Train node; Wan 2.2's
    model_low_noise input gives the low-noise expert's file as "<role>_low_noise"."""
    model_files = {}
    if _is_link(t.get("model_low_noise")):
        loader = _ancestor(prompt, t["model_low_noise"], set(LOADERS), ("model",))
        for widget, kind, role in LOADERS.get(loader["class_type"], ()) if loader else ():
            name = loader.get("inputs", {}).get(widget)
            if isinstance(name, str) and name and role in ("checkpoint", "diffusion_model"):
                model_files.setdefault(f"{role}_low_noise", resolve_model(kind, name))
    for input_name in ("model", "clip", "vae"):
        if not _is_link(t.get(input_name)):
            continue
        loader = _ancestor(prompt, t[input_name], set(LOADERS), ("model", "clip", "vae"))
        if loader is None:
            continue
        for widget, kind, role in LOADERS[loader["class_type"]]:
            name = loader.get("inputs", {}).get(widget)
            if isinstance(name, str) and name and role not in model_files:
                model_files[role] = resolve_model(kind, name)
    return model_files


def _sample_prompts(prompt: dict, t: dict) -> tuple[str, ...]:
    if not _is_link(t.get("sample_prompts")):
        return ()
    _, p = _node(prompt, t["sample_prompts"], "sample_prompts")
    text = p.get("inputs", {}).get("prompts")
    return tuple(line.strip() for line in text.splitlines() if line.strip()) if isinstance(text, str) else ()


def family_from_keys(keys) -> str | None:
    """The family of a checkpoint or diffusion-model file from its tensor names (the safetensors header),
    for the CLI, which has no loaded MODEL to ask. None when nothing matches."""
    keys = list(keys)

    def has(fragment):
        return any(fragment in k for k in keys)
    if has("conditioner.embedders.1.model") or has("label_emb.0.0.weight") and has("input_blocks.8"):
        return "sdxl"
    if has("input_blocks.") and has("middle_block."):
        return "sd2" if has("cond_stage_model.model.transformer") else "sd1"
    if has("joint_blocks."):
        return "sd3"
    if has("double_blocks.") and has("single_blocks."):
        if has("distilled_guidance_layer"):
            return "chroma"
        if has("double_stream_modulation_img"):
            return "flux2"
        return "flux1-dev" if has("guidance_in.") else "flux1-schnell"
    if has("transformer_blocks.") and has("img_in") and has("txt_norm"):
        return "qwen-image"
    if has("double_stream_blocks.") and has("single_stream_blocks."):
        return "hidream"
    if has("noise_refiner.") and has("context_refiner."):
        # Z-Image (6B) has 30 main layers, Lumina Image 2.0 (2B) 26.
        return "z-image" if has("layers.29.") else "lumina2"
    if has("blocks.0.self_attn.q") and has("blocks.0.cross_attn"):
        return "wan"
    return None
