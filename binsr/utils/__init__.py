"""Small helpers with no knowledge of images or models."""

from binsr.utils.fs import atomic_write, write_csv, write_json
from binsr.utils.text import format_table, human_count

__all__ = ["atomic_write", "format_table", "human_count", "write_csv", "write_json"]
