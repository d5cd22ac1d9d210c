"""Every picture Kiln draws, with PIL only (no plotting dependency), as [H, W, 3] float32 images in 0..1:
bar charts (bars.py), the loss chart (loss_chart.py), the sample timeline (timeline.py), the dataset
preview grid (dataset_grid.py), and the one float <-> 8-bit conversion they and the rest of Kiln use
(images.py)."""
from .bars import bar_chart, horizontal_bars
from ..data.images import to_float, to_uint8
from .loss_chart import loss_plot
from .timeline import timeline_image

__all__ = ["bar_chart", "horizontal_bars", "loss_plot", "timeline_image", "to_float", "to_uint8"]
