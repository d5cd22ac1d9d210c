"""Thin node adapters: typed inputs with tooltips -> core config objects -> core calls -> host types."""
import importlib
import logging

NODE_CLASS_MAPPINGS = {}
NODE_DISPLAY_NAME_MAPPINGS = {}

# One family per module; a module that fails to import (a missing optional package) must not take
# the other families down with it.
for _family in ("dataset", "tagging", "captioning", "networks", "train", "tools", "export"):
    try:
        _mod = importlib.import_module(f".{_family}", __name__)
    except Exception:
        logging.exception("Kiln: the %s nodes failed to import", _family)
        continue
    NODE_CLASS_MAPPINGS.update(getattr(_mod, "NODE_CLASS_MAPPINGS", {}))
    NODE_DISPLAY_NAME_MAPPINGS.update(getattr(_mod, "NODE_DISPLAY_NAME_MAPPINGS", {}))
