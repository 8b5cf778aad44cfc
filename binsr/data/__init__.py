"""SR datasets from image folders: benchmark evaluation and seeded patch training."""

from binsr.data.datasets import LRPhotoDataset, SREvalDataset, SRTrainDataset
from binsr.data.degradations import bicubic_downscale
from binsr.data.paths import DATA_ENV, data_root, resolve_data_dir
from binsr.data.sample import sample_image_path
from binsr.data.transforms import dihedral, mod_crop, paired_random_crop

__all__ = [
    "LRPhotoDataset",
    "DATA_ENV",
    "SREvalDataset",
    "SRTrainDataset",
    "bicubic_downscale",
    "data_root",
    "dihedral",
    "mod_crop",
    "paired_random_crop",
    "resolve_data_dir",
    "sample_image_path",
]
