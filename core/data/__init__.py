"""Datasets: kohya's folder layout, captions, image repair, buckets, and the latent cache."""
from .config import DatasetConfig, DatasetError, parse_color
from .dataset import ImageEntry, KilnDataset
from .fingerprint import dataset_fingerprint
from .load import load_dataset
from .plan import SampleRef

__all__ = ["DatasetConfig", "DatasetError", "ImageEntry", "KilnDataset", "SampleRef", "dataset_fingerprint", "load_dataset",
           "parse_color"]
