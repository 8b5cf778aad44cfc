"""Where ``binsr upscale`` writes: every output path planned and checked before a model is loaded.

Inputs given as folders keep their subfolders under ``-o`` (``in/a/x.png`` → ``OUT/a/x_x4.png``), so
names from different folders never collide; files given one by one go to ``OUT`` directly. Problems
(an output folder that is a file or cannot be written, two inputs that would write the same file, an
output name taken by a folder, an output that would replace its own input) are all reported, one line
each, in one :class:`~binsr.errors.BinsrError`. Existing outputs are skipped unless ``overwrite``; inputs that
do not decode are listed in :attr:`Plan.unreadable` and left out, so one bad file among many stops nothing.
Files under ``-o`` are never inputs; where ``-o`` is an input folder itself, files named like binsr's
outputs (``*_SUFFIX.*``) are left out instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from binsr.errors import BinsrError, ImageReadError

EXTENSIONS = {"png": ".png", "jpg": ".jpg", "webp": ".webp"}
_KEPT_FORMATS = {".png": "png", ".jpg": "jpg", ".jpeg": "jpg", ".webp": "webp"}  # --ext auto keeps these


@dataclass
class Job:
    """One input file and where its result goes (``file_format``: png, jpg or webp)."""

    source: Path
    target: Path
    file_format: str
    compare: Path | None = None  # NAME_SUFFIX_compare.png beside it (--compare)


@dataclass
class Plan:
    jobs: list[Job] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)  # existing outputs left alone (no --overwrite)
    unreadable: list[str] = field(default_factory=list)  # inputs that do not decode, one line each
    left_out: list[str] = field(default_factory=list)  # hidden entries, broken links, folders met twice


def output_format(source: Path, ext: str, needs_png: bool) -> str:
    """--ext: ``auto`` keeps PNG/JPEG/WebP inputs' format and writes PNG otherwise; alpha and 16-bit
    results are always PNG (JPEG and WebP cannot hold them losslessly), as Real-ESRGAN does for alpha."""
    if needs_png:
        return "png"
    if ext == "auto":
        return _KEPT_FORMATS.get(source.suffix.lower(), "png")
    return ext


def writable_problem(path: Path) -> str | None:
    """Why a file cannot be created at ``path`` (None if it can): its nearest existing ancestor must be a
    folder this process may write into, and ``path`` itself must not be a folder."""
    if path.is_dir():
        return f"{path}: is a folder, not a file"
    reason = _creatable(path)
    return f"{path}: {reason}" if reason else None


def _creatable(path: Path) -> str | None:
    """Why ``path`` (file or folder) cannot be created: its nearest existing ancestor is a file or is not
    writable; None if it can."""
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return f"cannot be created, {parent} is a file"
    if _read_only(parent):
        return f"cannot write into {parent} (read-only file system)"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot write into {parent} (permission denied)"
    return None


def _read_only(folder: Path) -> bool:
    """Whether ``folder`` is on a file system mounted read-only (where statvfs can tell)."""
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (AttributeError, OSError):  # no statvfs (Windows) or unreadable: let the write say
        return False


def plan_outputs(inputs: list[str], out_dir: Path, suffix: str, ext: str, overwrite: bool,
                 needs_png: Callable[[Path], bool], compare: bool = False, extra: tuple[Path, ...] = ()) -> Plan:
    """The jobs for ``inputs`` (files or folders) and ``extra`` files, written under ``out_dir`` as
    NAME[_SUFFIX].EXT (and NAME[_SUFFIX]_compare.png with ``compare``).

    ``needs_png(source)`` says whether a source keeps alpha or 16 bits (its output must be PNG); it may
    raise a BinsrError (an unreadable file), which is reported with the other problems."""
    from binsr.image import scan_images

    problems: list[str] = []
    if out_dir.exists() and not out_dir.is_dir():
        raise BinsrError(f"-o {out_dir}: exists and is a file, not a folder")
    reason = _creatable(out_dir / "x")  # a file inside the folder: the folder may not exist yet
    if reason is not None:
        raise BinsrError(f"-o {out_dir}: {reason}")
    out_real = out_dir.resolve()
    plan, claimed = Plan(), {}
    sources: list[tuple[Path, Path]] = []  # (file, its folder under -o)
    for item in map(Path, inputs):
        if item.is_dir():
            scan = scan_images(item)
            plan.left_out += scan.skipped
            found = [p for p in scan.files if not _is_output(p, item.resolve(), out_real, suffix)]
            if not found:
                raise BinsrError(f"no images found in {item}" + (" (outputs under -o are not inputs)"
                                                                  if scan.files else ""))
            sources += [(p, out_dir / p.parent.relative_to(item)) for p in found]
        elif item.is_file():
            sources.append((item, out_dir))
        elif item.exists():
            raise BinsrError(f"{item}: not a file or folder")
        else:
            raise BinsrError(f"no such file or folder: {item}")
    sources += [(path, out_dir) for path in extra]
    for source, folder in sources:
        try:
            file_format = output_format(source, ext, needs_png(source))
        except ImageReadError as err:  # the others still run; the command reports it and exits non-zero
            plan.unreadable.append(str(err))
            continue
        except BinsrError as err:
            problems.append(str(err))
            continue
        name = f"{source.stem}{'_' + suffix if suffix else ''}"
        target = folder / f"{name}{EXTENSIONS[file_format]}"
        targets = [target] + ([folder / f"{name}_compare.png"] if compare else [])
        clash = False
        for path in targets:
            key = os.path.normcase(str(path.resolve()))
            if key in claimed:
                problems.append(f"{claimed[key]} and {source} would both be written to {path}")
                clash = True
            claimed[key] = source
        if clash:
            continue
        if target.resolve() == source.resolve():
            problems.append(f"{source}: its output {target} would replace it (use --suffix or another -o)")
            continue
        found = [p for p in map(writable_problem, targets) if p is not None]
        if found:
            problems += found
        elif target.exists() and not overwrite:
            plan.skipped.append(target)
        else:
            plan.jobs.append(Job(source, target, file_format, targets[1] if compare else None))
    if problems:
        raise BinsrError("\n".join(problems))
    return plan


def _is_output(path: Path, folder: Path, out_real: Path, suffix: str) -> bool:
    """Whether a file found in the input ``folder`` is one of binsr's outputs rather than an input: any file
    under -o where -o is inside ``folder``; where -o is ``folder`` itself, files named NAME_SUFFIX.*."""
    if out_real == folder:
        return bool(suffix) and path.stem.endswith(f"_{suffix}")
    return folder in out_real.parents and out_real in path.resolve().parents
