"""Atomic file writes: a reader never sees a half-written output or checkpoint."""

from __future__ import annotations

import csv
import glob
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


class OutputExists(FileExistsError):  # noqa: N818 - a state of a file, caught by name
    """An exclusive write found its file already there (another process made it since the run was planned)."""


@contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb", exclusive: bool = False) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on success fsync it and rename it over ``path``.

    On an exception the temporary file is removed and ``path`` keeps its old content. ``exclusive``: never
    replace a file: the finished temporary is hard-linked to ``path``, which fails if ``path`` exists by then
    (:class:`OutputExists`), so of two processes writing one file, one writes it and the other is told.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp_name, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        _publish(tmp_name, path, exclusive)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove the temporaries of ``path`` that binsr processes no longer running left behind (killed with
    SIGKILL, or by a power cut): ``.NAME.PID.*.tmp`` files whose PID is not a live process. Returns them."""
    removed = []
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = stale.name[len(path.name) + 2:].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            try:
                stale.unlink()
                removed.append(stale)
            except OSError:  # another process removed it first, or it is not ours to remove
                pass
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid() or os.name != "posix":  # (Windows' os.kill would end the process, not probe it)
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):  # someone else's process, or no way to tell: keep its file
        return True
    return True


def _publish(tmp_name: str, path: Path, exclusive: bool) -> None:
    """Give the finished temporary file its name ``path``. ``exclusive``: only if no file has that name — a
    hard link (atomic, and it fails if the name exists); where the file system has none, an O_EXCL
    placeholder claimed first and then replaced."""
    if not exclusive:
        os.replace(tmp_name, path)
        return
    taken = OutputExists(f"{path}: appeared while this run was writing it; left as it is")
    try:
        os.link(tmp_name, path)
    except FileExistsError:
        raise taken from None
    except OSError:  # no hard links here (FAT, some network and FUSE file systems)
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        except FileExistsError:
            raise taken from None
        os.replace(tmp_name, path)
        return
    os.unlink(tmp_name)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_write(path, "w") as handle:
        json.dump(obj, handle, indent=2)
        handle.write("\n")


def write_csv(path: str | os.PathLike[str], rows: list[dict[str, Any]], fields: list[str] | None = None) -> None:
    """Write dict rows as CSV with a header (columns: ``fields`` or the first row's keys), atomically."""
    fields = fields or (list(rows[0]) if rows else [])
    with atomic_write(path, "w") as handle:
        writer = csv.DictWriter(handle, fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
