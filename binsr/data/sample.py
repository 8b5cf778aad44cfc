"""A sample photograph that every install has: matplotlib (a binsr dependency) ships Grace Hopper's
portrait (512×600 RGB) among its sample data. Used by ``binsr upscale --sample``."""

from __future__ import annotations

from pathlib import Path

from binsr.errors import BinsrError

SAMPLE_NAME = "grace_hopper.jpg"


def sample_image_path() -> Path:
    """Path of the sample photo inside the installed matplotlib."""
    from matplotlib import cbook

    path = Path(cbook.get_sample_data(SAMPLE_NAME, asfileobj=False))
    if not path.is_file():
        raise BinsrError(f"matplotlib's sample image {SAMPLE_NAME} is missing from this install")
    return path
