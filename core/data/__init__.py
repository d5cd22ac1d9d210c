"""Datasets: kohya's folder layout, captions, image repair, buckets, and the latent cache."""
from .config import DatasetConfig
from .dataset import DatasetError, ImageEntry, KilnDataset, SampleRef, load_dataset

__all__ = ["DatasetConfig", "DatasetError", "ImageEntry", "KilnDataset", "SampleRef", "load_dataset"]
