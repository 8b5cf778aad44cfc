"""Image files, MATLAB-compatible resizing and colour conversion. Knows nothing of models."""

from binsr.image.color import quantize, rgb_to_gray, rgb_to_y, rgb_to_ycbcr
from binsr.image.compose import side_by_side
from binsr.image.io import (
    WRITE_FORMATS,
    Picture,
    image_extensions,
    is_grayscale_file,
    list_images,
    scan_images,
    read_image,
    read_image_array,
    read_picture,
    OutputImage,
    write_image,
    write_png,
)
from binsr.image.resize import BandResize, imresize, imresize_window

__all__ = [
    "BandResize",
    "WRITE_FORMATS",
    "Picture",
    "image_extensions",
    "imresize",
    "imresize_window",
    "is_grayscale_file",
    "list_images",
    "scan_images",
    "quantize",
    "read_image",
    "read_image_array",
    "read_picture",
    "rgb_to_gray",
    "rgb_to_y",
    "rgb_to_ycbcr",
    "side_by_side",
    "OutputImage",
    "write_image",
    "write_png",
]
