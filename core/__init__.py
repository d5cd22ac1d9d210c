"""Kiln's logic, importable and testable without ComfyUI (no host imports anywhere below)."""
