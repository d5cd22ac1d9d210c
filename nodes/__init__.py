"""Thin node adapters on ComfyUI's V3 node API: a schema of typed inputs with tooltips -> core config objects ->
core calls -> host types. Each module lists its node classes in ``NODES``; the ids and display names come from
their schemas."""
import importlib
import logging

NODE_CLASS_MAPPINGS = {}
NODE_DISPLAY_NAME_MAPPINGS = {}

# Registered through NODE_CLASS_MAPPINGS rather than comfy_entrypoint: both supported hosts run V3 classes from
# it (and the headless runner and the workflow generator read it).
# One family per module; a module that fails to import (a missing optional package) must not take
# the other families down with it.
for _family in ("dataset", "tagging", "captioning", "networks", "train", "tools", "export"):
    try:
        _mod = importlib.import_module(f".{_family}", __name__)
        for _cls in _mod.NODES:
            _schema = _cls.GET_SCHEMA()
            NODE_CLASS_MAPPINGS[_schema.node_id] = _cls
            NODE_DISPLAY_NAME_MAPPINGS[_schema.node_id] = _schema.display_name
    except Exception:
        logging.exception("Kiln: the %s nodes failed to load", _family)
