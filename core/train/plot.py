"""Moved to core/plots/loss_chart.py; this name stays only until nodes/train.py imports from there."""
from ..plots.loss_chart import loss_plot, smooth  # noqa: F401
