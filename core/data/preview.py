"""Moved to core/plots/dataset_grid.py; this name stays only until nodes/dataset.py imports from there."""
from ..plots.dataset_grid import preview_grid, preview_refs  # noqa: F401
