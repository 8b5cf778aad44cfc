"""Image files, MATLAB-compatible resizing and colour conversion. Knows nothing of models."""

from binsr.image.color import quantize, rgb_to_gray, rgb_to_y, rgb_to_ycbcr
from binsr.image.compose import side_by_side
from binsr.image.io import (
    IMAGE_EXTENSIONS,
    is_grayscale_file,
    list_images,
    read_image,
    read_image_array,
    write_png,
)
from binsr.image.resize import imresize

__all__ = [
    "IMAGE_EXTENSIONS",
    "imresize",
    "is_grayscale_file",
    "list_images",
    "quantize",
    "read_image",
    "read_image_array",
    "rgb_to_gray",
    "rgb_to_y",
    "rgb_to_ycbcr",
    "side_by_side",
    "write_png",
]
