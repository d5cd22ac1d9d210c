"""Regenerate the shipped UI-format workflows from compact graph descriptions.

``python -m kiln.make_workflows`` (needs the host, for each node's inputs). Widgets not given take the
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
    return {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}.get(kind)


def to_ui(graph: list[dict], node_classes: dict) -> dict:
    """graph: [{"id": key, "type": class, "widgets": {...}, "inputs": {name: (src_key, slot)}, "title": str}]"""
    from kiln_pack.core.workflow import _has_control_widget, _is_widget
    ids = {n["id"]: i + 1 for i, n in enumerate(graph)}
    depth: dict[str, int] = {}

    def level(key):
        if key not in depth:
            node = next(n for n in graph if n["id"] == key)
            depth[key] = 1 + max([level(src) for src, _ in node.get("inputs", {}).values()] or [-1])
        return depth[key]
    for n in graph:
        level(n["id"])
    rows: dict[int, int] = {}
    links, nodes = [], []
    out_links: dict[tuple[str, int], list[int]] = {}
    for n in graph:
        for name, (src, slot) in n.get("inputs", {}).items():
            links.append([len(links) + 1, ids[src], slot, ids[n["id"]], None, None, name])
            out_links.setdefault((src, slot), []).append(len(links))
    for order, n in enumerate(graph):
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
        col = depth[n["id"]]
        # Stack nodes in their column by height (the live chart adds room on the Train node).
        height = 40 + 24 * (len(widgets) + len(inputs) + len(outputs)) + (260 if n["type"] == "KilnTrainLora" else 0)
        y = rows.get(col, 40)
        rows[col] = y + height + 50
        nodes.append({"id": ids[n["id"]], "type": n["type"], "pos": [40 + 400 * col, y],
                      "size": [360, height], "flags": {}, "order": order, "mode": 0,
                      "inputs": inputs, "outputs": outputs,
                      "properties": {"Node name for S&R": n["type"]}, "widgets_values": widgets,
                      **({"title": n["title"]} if n.get("title") else {})})
    for l in links:
        del l[6]
    return {"id": "00000000-0000-4000-8000-00000000" + f"{abs(hash(json.dumps(graph, sort_keys=True))) % 10**4:04d}",
            "revision": 0, "last_node_id": len(nodes), "last_link_id": len(links), "nodes": nodes, "links": links,
            "groups": [], "config": {}, "extra": {"ds": {"scale": 0.8, "offset": [0, 0]}}, "version": 0.4}


def main() -> int:
    load_pack()
    from kiln_pack.host import runner
    import nodes as host_nodes
    from .graphs import GRAPHS
    runner.boot_host()
    out_dir = PACK_ROOT / "workflows"
    out_dir.mkdir(exist_ok=True)
    for name, graph in GRAPHS.items():
        ui = to_ui(graph, host_nodes.NODE_CLASS_MAPPINGS)
        ui["id"] = f"6b696c6e-0000-4000-8000-{sum(map(ord, name)):012d}"
        (out_dir / f"{name}.json").write_text(json.dumps(ui, indent=1) + "\n")
        print(f"wrote workflows/{name}.json ({len(ui['nodes'])} nodes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
