"""Moved to core/plots/timeline.py; this name stays only until nodes/train.py imports from there."""
from ..plots.timeline import TimelineEntry, load_entries, parse_sample_file, sample_file_name, timeline_image  # noqa: F401
