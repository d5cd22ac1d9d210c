"""Regenerate the shipped UI-format workflows from compact graph descriptions.

``python -m cli.make_workflows`` (needs the host, for each node's inputs). Widgets not given take the
node's own defaults, so the files stay in step with the nodes. Graphs live in ``kiln/graphs.py``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from . import PACK_ROOT, load_pack


def _default(spec):
    kind = spec[0]
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if "default" in opts:
        return opts["default"]
    if isinstance(kind, (list, tuple)):
        return kind[0] if kind else ""
    if kind == "COMBO":   # a V3 combo: its choices are in the options
        return (opts.get("options") or [""])[0]
    return {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}.get(kind)


NOTE_TYPES = {"Note", "MarkdownNote"}
GAP = 60            # between nodes, and between a group's frame and its nodes
TITLE = 40          # a node's title bar sits above its pos; a group's title inside its frame
GROUP_COLORS = ["#3f789e", "#8A8", "#b58b2a", "#a1309b", "#88A"]


def node_size(n: dict, types: dict, widgets: list, inputs: list, outputs: list) -> tuple[int, int]:
    """A size at least as big as the frontend draws the node, so the laid-out boxes never overlap.

    The frontend grows a node to fit its widgets (about 24 px each, more for a multiline text box) and its
    slots (about 20 px each); image previews and Kiln's DOM widgets (live chart, sample timeline) are drawn
    inside the node's box, so nodes that show them get room for them here."""
    multiline = sum(1 for s in ("required", "optional") for spec in (types.get(s) or {}).values()
                    if len(spec) > 1 and isinstance(spec[1], dict) and spec[1].get("multiline"))
    slots = max(len([i for i in inputs if "widget" not in i]), len(outputs))
    height = 20 * slots + 26 * len(widgets) + 90 * multiline + 20
    width = 360
    extra = {"KilnTrainLora": (460, 520), "SaveImage": (340, 300), "PreviewImage": (340, 300),
             "KilnDatasetPreview": (360, 260), "KilnSampleTimeline": (360, 300)}
    if n["type"] in extra:
        width, room = extra[n["type"]]
        height += room
    if n["type"].startswith("Kiln") and n["type"] in ("KilnTagFrequency", "KilnTagFilter", "KilnInspectLora",
                                                      "KilnCompareLoras", "KilnTagger"):
        height += 140   # their text output is shown in the node
    return width, height


def _note(node_id: int, n: dict, order: int) -> dict:
    """A frontend-only Note node (the executor never sees it: core.workflow skips it)."""
    return {"id": node_id, "type": n["type"], "pos": [0, 0], "size": list(n.get("size", (360, 200))), "flags": {},
            "order": order, "mode": 0, "inputs": [], "outputs": [], "properties": {},
            "widgets_values": [n["text"]], "color": "#432", "bgcolor": "#653",
            **({"title": n["title"]} if n.get("title") else {})}


def layout(graph: list[dict], nodes: list[dict], ids: dict) -> list[dict]:
    """Place nodes in ComfyUI groups, one group after another from left to right in graph order.

    Inside a group, nodes stand in sub-columns by their depth among the group's own nodes (a node right
    of what it reads) and are stacked by their real height. Notes go on top of the first column. Returns
    the UI-format groups; sets each node's pos."""
    by_key = {n["id"]: node for n, node in zip(graph, nodes)}
    order: list[str] = []
    members: dict[str, list[dict]] = {}
    for n in graph:
        if n["type"] in NOTE_TYPES:
            continue
        name = n.get("group", "Graph")
        if name not in members:
            order.append(name)
            members[name] = []
        members[name].append(n)
    notes = [n for n in graph if n["type"] in NOTE_TYPES]
    x, top = 40, 40
    y_notes = top
    for n in notes:
        node = by_key[n["id"]]
        node["pos"] = [x + GAP, y_notes + TITLE]
        y_notes += TITLE + node["size"][1] + GAP
    groups = []
    for gi, name in enumerate(order):
        inside = {n["id"] for n in members[name]}
        local: dict[str, int] = {}

        def depth(key):
            if key not in local:
                n = next(m for m in members[name] if m["id"] == key)
                local[key] = 1 + max([depth(src) for src, _ in n.get("inputs", {}).values() if src in inside]
                                     or [-1])
            return local[key]
        cols: dict[int, list[dict]] = {}
        for n in members[name]:
            cols.setdefault(depth(n["id"]), []).append(by_key[n["id"]])
        y0 = y_notes if gi == 0 and notes else top
        gx, width, bottom = x, 0, y0
        for c in sorted(cols):
            cy = y0 + TITLE + GAP // 2
            col_w = max(node["size"][0] for node in cols[c])
            for node in cols[c]:
                node["pos"] = [gx + GAP // 2, cy + TITLE]
                cy += TITLE + node["size"][1] + GAP // 2
            bottom = max(bottom, cy)
            gx += col_w + GAP // 2
        width = gx - x + GAP // 2
        groups.append({"id": gi + 1, "title": name, "bounding": [x, y0, width, bottom - y0 + GAP // 2],
                       "color": GROUP_COLORS[gi % len(GROUP_COLORS)], "font_size": 24, "flags": {}})
        x += width + GAP
    return groups


def overlaps(boxes: list[tuple[str, float, float, float, float]]) -> list[tuple[str, str]]:
    """Pairs of (name, x, y, w, h) boxes that intersect (touching edges do not count)."""
    out = []
    for i, (a, ax, ay, aw, ah) in enumerate(boxes):
        for b, bx, by, bw, bh in boxes[i + 1:]:
            if ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah:
                out.append((a, b))
    return out


def node_boxes(ui: dict) -> list[tuple[str, float, float, float, float]]:
    """Each node's box as the frontend draws it: pos is the body's corner, the title bar sits above it."""
    return [(f"{n['id']}:{n.get('title', n['type'])}", n["pos"][0], n["pos"][1] - TITLE + 10, n["size"][0],
             n["size"][1] + TITLE - 10) for n in ui["nodes"]]


def to_ui(graph: list[dict], node_classes: dict) -> dict:
    """graph: [{"id": key, "type": class, "widgets": {...}, "inputs": {name: (src_key, slot)}, "title": str}]"""
    from kiln.core.workflow import _has_control_widget, _is_widget
    ids = {n["id"]: i + 1 for i, n in enumerate(graph)}
    links, nodes = [], []
    out_links: dict[tuple[str, int], list[int]] = {}
    for n in graph:
        for name, (src, slot) in n.get("inputs", {}).items():
            links.append([len(links) + 1, ids[src], slot, ids[n["id"]], None, None, name])
            out_links.setdefault((src, slot), []).append(len(links))
    for order, n in enumerate(graph):
        if n["type"] in NOTE_TYPES:
            nodes.append(_note(ids[n["id"]], n, order))
            continue
        cls = node_classes[n["type"]]
        types = cls.INPUT_TYPES()
        widgets, inputs = [], []
        link_of = {l[6]: l for l in links if l[3] == ids[n["id"]]}
        for section in ("required", "optional"):
            for name, spec in (types.get(section) or {}).items():
                if _is_widget(spec):
                    value = n.get("widgets", {}).get(name, _default(spec))
                    widgets.append(value)
                    if _has_control_widget(name, spec):
                        widgets.append("fixed")
                    if name in link_of:
                        inputs.append({"name": name, "type": spec[0] if isinstance(spec[0], str) else "COMBO",
                                       "widget": {"name": name}, "link": link_of[name][0]})
                elif section == "required" or name in link_of:
                    link = link_of.get(name)
                    inputs.append({"name": name, "type": spec[0], "link": link[0] if link else None})
                    if link:
                        link[4] = len(inputs) - 1
                        link[5] = spec[0]
        unknown = set(n.get("widgets", {})) - {name for s in ("required", "optional")
                                               for name in (types.get(s) or {})}
        if unknown:
            raise ValueError(f"{n['id']}: {n['type']} has no inputs named {sorted(unknown)}")
        outputs = [{"name": (getattr(cls, "RETURN_NAMES", None) or cls.RETURN_TYPES)[i], "type": t,
                    "links": out_links.get((n["id"], i), []), "slot_index": i}
                   for i, t in enumerate(cls.RETURN_TYPES)]
        nodes.append({"id": ids[n["id"]], "type": n["type"], "pos": [0, 0],
                      "size": list(node_size(n, types, widgets, inputs, outputs)), "flags": {}, "order": order, "mode": 0,
                      "inputs": inputs, "outputs": outputs,
                      "properties": {"Node name for S&R": n["type"]}, "widgets_values": widgets,
                      **({"title": n["title"]} if n.get("title") else {})})
    groups = layout(graph, nodes, ids)
    for l in links:
        del l[6]
    return {"id": "00000000-0000-4000-8000-00000000" + f"{abs(hash(json.dumps(graph, sort_keys=True))) % 10**4:04d}",
            "revision": 0, "last_node_id": len(nodes), "last_link_id": len(links), "nodes": nodes, "links": links,
            "groups": groups, "config": {}, "extra": {"ds": {"scale": 0.8, "offset": [0, 0]}}, "version": 0.4}


def main() -> int:
    load_pack()
    from cli import runner
    from .graphs import GRAPHS
    runner.boot_host()
    out_dir = PACK_ROOT / "workflows"
    out_dir.mkdir(exist_ok=True)
    for name, graph in GRAPHS.items():
        ui = to_ui(graph, runner.node_classes())
        ui["id"] = f"6b696c6e-0000-4000-8000-{sum(map(ord, name)):012d}"
        (out_dir / f"{name}.json").write_text(json.dumps(ui, indent=1) + "\n")
        print(f"wrote workflows/{name}.json ({len(ui['nodes'])} nodes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
