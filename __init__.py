"""Kiln: train LoRAs inside ComfyUI graphs.

ComfyUI imports this folder as a custom-node pack. The node modules need the host, so they are only
imported when the host is already up (always true inside ComfyUI); the CLI and the host-free tests
import ``core`` through the same package without starting ComfyUI.
"""
import sys

WEB_DIRECTORY = "web"
NODE_CLASS_MAPPINGS = {}
NODE_DISPLAY_NAME_MAPPINGS = {}

if "folder_paths" in sys.modules:
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: F811

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
