"""Datasets: kohya's folder layout, captions, image repair, buckets, and the latent cache."""
from .config import DatasetConfig, parse_color
from .dataset import DatasetError, ImageEntry, KilnDataset, SampleRef, dataset_fingerprint, load_dataset

__all__ = ["DatasetConfig", "DatasetError", "ImageEntry", "KilnDataset", "SampleRef", "dataset_fingerprint", "load_dataset",
           "parse_color"]
