"""Turning a UI-format workflow (what the ComfyUI frontend saves) into the API format the executor runs.

Pure data work: the caller supplies each node class's INPUT_TYPES. Frontend-only nodes (Note, Reroute,
PrimitiveNode) are resolved here; muted nodes are dropped and bypassed ones are passed through.
"""
from __future__ import annotations

from typing import Callable

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
FRONTEND_ONLY = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
MODE_MUTED, MODE_BYPASS = 2, 4


class WorkflowError(ValueError):
    pass


def is_api_format(data: dict) -> bool:
    return "nodes" not in data and all(isinstance(v, dict) and "class_type" in v for v in data.values())


def _is_widget(spec) -> bool:
    kind = spec[0]
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if opts.get("forceInput"):
        return False
    return isinstance(kind, (list, tuple)) or kind in WIDGET_TYPES


def _has_control_widget(name: str, spec) -> bool:
    """The frontend adds a 'control after generate' widget (its value is saved too) to seed-like INTs."""
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if "control_after_generate" in opts:
        return bool(opts["control_after_generate"])
    return spec[0] == "INT" and name in ("seed", "noise_seed")


def widget_names(input_types: dict) -> list[tuple[str, object]]:
    out = []
    for section in ("required", "optional"):
        for name, spec in (input_types.get(section) or {}).items():
            if _is_widget(spec):
                out.append((name, spec))
    return out


def ui_to_api(workflow: dict, input_types: Callable[[str], dict]) -> dict:
    nodes = {n["id"]: n for n in workflow.get("nodes", [])}
    links = {}
    for link in workflow.get("links", []):
        if isinstance(link, dict):
            links[link["id"]] = (link["origin_id"], link["origin_slot"])
        else:
            links[link[0]] = (link[1], link[2])
    if workflow.get("definitions", {}).get("subgraphs"):
        raise WorkflowError("this workflow uses subgraphs; convert them to plain nodes to run it headless")

    def source(node_id, slot):
        """Follow reroutes and bypassed nodes back to a real output."""
        node = nodes[node_id]
        if node["type"] == "Reroute" or node.get("mode") == MODE_BYPASS:
            inputs = node.get("inputs", [])
            out_type = (node.get("outputs") or [{}])[slot].get("type") if node.get("outputs") else None
            for inp in inputs:
                if inp.get("link") is not None and (node["type"] == "Reroute" or inp.get("type") == out_type):
                    return source(*links[inp["link"]])
            raise WorkflowError(f"node {node_id} ({node['type']}) is bypassed and has no input of the type its output needs")
        return [str(node_id), slot]

    prompt = {}
    for node_id, node in nodes.items():
        ctype = node["type"]
        if ctype in FRONTEND_ONLY or node.get("mode") in (MODE_MUTED, MODE_BYPASS):
            continue
        types = input_types(ctype)
        if types is None:
            raise WorkflowError(f"node {node_id}: unknown node type {ctype!r} (is the pack that provides it installed?)")
        values = list(node.get("widgets_values") or [])
        if isinstance(node.get("widgets_values"), dict):
            inputs = dict(node["widgets_values"])
        else:
            inputs = {}
            i = 0
            for name, spec in widget_names(types):
                if i >= len(values):
                    break
                inputs[name] = values[i]
                i += 1
                if _has_control_widget(name, spec):
                    i += 1
        for inp in node.get("inputs", []):
            link = inp.get("link")
            if link is None:
                continue
            src_id, slot = links[link]
            src = nodes[src_id]
            if src["type"] == "PrimitiveNode":
                inputs[inp["name"]] = (src.get("widgets_values") or [None])[0]
            else:
                inputs[inp["name"]] = source(src_id, slot)
        prompt[str(node_id)] = {"class_type": ctype, "inputs": inputs, "_meta": {"title": node.get("title", ctype)}}
    return prompt
