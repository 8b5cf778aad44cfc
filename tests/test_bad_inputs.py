"""Bad or unusual inputs and faults, tried as a new user would: for each, the exit code, one line naming the
file or option, and nothing half-written or lost. Small images are made in each test; the model is the shipped
default (one network call per image)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from binsr.cli import main
from binsr.image import imresize, read_picture
from conftest import smooth_image

RNG = np.random.default_rng(7)


def _rgb(path: Path, height: int = 20, width: int = 24, **save: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(smooth_image(RNG, height, width)).save(path, **save)
    return path


def _files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path → bytes), hidden temporary files included."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _run(argv: list[object], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:  # argparse usage errors
        code = exit_.code
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def _errors(err: str) -> list[str]:
    return [line for line in err.splitlines() if "error:" in line]


# --- errors found before any work: (setup, argv, exit code, message) --------------------------------------------

def _same_stem(tmp: Path) -> list[object]:
    _rgb(tmp / "in" / "photo.jpg")
    _rgb(tmp / "in" / "photo.png")
    return ["upscale", tmp / "in", "-o", tmp / "out", "--ext", "png"]


def _out_is_file(tmp: Path) -> list[object]:
    (tmp / "out").write_text("keep me")
    return ["upscale", _rgb(tmp / "a.png"), "-o", tmp / "out"]


def _out_under_file(tmp: Path) -> list[object]:
    (tmp / "out").write_text("keep me")
    return ["upscale", _rgb(tmp / "a.png"), "-o", tmp / "out" / "sub"]


def _out_taken_by_folder(tmp: Path) -> list[object]:
    (tmp / "out" / "a_x4.png").mkdir(parents=True)
    return ["upscale", _rgb(tmp / "a.png"), "-o", tmp / "out"]


def _replaces_input(tmp: Path) -> list[object]:
    _rgb(tmp / "in" / "a.png")
    return ["upscale", tmp / "in", "-o", tmp / "in", "--suffix", ""]


def _animated(tmp: Path) -> list[object]:
    frames = [Image.fromarray(smooth_image(RNG, 16, 16)) for _ in range(3)]
    frames[0].save(tmp / "anim.gif", save_all=True, append_images=frames[1:])
    return ["upscale", tmp / "anim.gif", "-o", tmp / "out"]


def _bad_float_tiff(tmp: Path) -> list[object]:
    import tifffile

    tifffile.imwrite(tmp / "hdr.tif", np.full((8, 8, 3), 4.0, np.float32), photometric="rgb")
    return ["upscale", tmp / "hdr.tif", "-o", tmp / "out"]


def _missing(tmp: Path) -> list[object]:
    return ["upscale", tmp / "nothere.png", "-o", tmp / "out"]


def _bad_suffix(tmp: Path) -> list[object]:
    return ["upscale", _rgb(tmp / "a.png"), "-o", tmp / "out", "--suffix", "{name}"]


def _json_unwritable(tmp: Path) -> list[object]:
    _rgb(tmp / "hr" / "a.png", 32, 32)
    (tmp / "blocker").write_text("keep me")
    return ["eval", "--data", tmp / "hr", "--scale", 4, "--json", tmp / "blocker" / "r.json", "--no-lpips",
            "--no-complexity", "--quiet"]


def _train_negative_steps(tmp: Path) -> list[object]:
    return ["train", "bidiffsr-small-x4", "--set", "steps=-5", "--set", f"out_dir={tmp / 'runs'}"]


def _train_zero_batch(tmp: Path) -> list[object]:
    return ["train", "bidiffsr-small-x4", "--set", "data.batch_size=0", "--set", f"out_dir={tmp / 'runs'}"]


def _train_zero_lr(tmp: Path) -> list[object]:
    return ["train", "bidiffsr-small-x4", "--set", "optim.lr=0", "--set", f"out_dir={tmp / 'runs'}"]


def _eval_too_small(tmp: Path) -> list[object]:
    _rgb(tmp / "hr" / "ok.png", 32, 32)
    _rgb(tmp / "hr" / "small.png", 8, 8)
    return ["eval", "--model", "bicubic", "--data", tmp / "hr", "--scale", 4, "--no-lpips", "--no-complexity",
            "--quiet"]


def _deep_header(tmp: Path) -> list[object]:
    from safetensors.torch import save_file

    from binsr.models.files import METADATA_KEY

    depth = 100_000
    save_file({"w": torch.zeros(1)}, tmp / "deep.safetensors",
              metadata={METADATA_KEY: '{"format": 2, "x": ' + "[" * depth + "]" * depth + "}"})
    return ["upscale", _rgb(tmp / "a.png"), "-o", tmp / "out", "--model", tmp / "deep.safetensors"]


def _damaged_default_model(tmp: Path, damage) -> Path:
    """A copy of the shipped default model file with ``damage(tensors)`` applied, header kept."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from binsr.pipelines import DEFAULT_MODEL, resolve

    source = resolve(DEFAULT_MODEL)
    with safe_open(str(source), framework="pt") as handle:
        metadata = handle.metadata()
    tensors = load_file(str(source))
    damage(tensors)
    save_file(tensors, tmp / "damaged.safetensors", metadata=metadata)
    return tmp / "damaged.safetensors"


def _nan_weights(tmp: Path) -> list[object]:
    def damage(tensors: dict) -> None:
        tensors["head.weight"][0, 0, 0, 0] = float("nan")
    return ["upscale", _rgb(tmp / "a.png"), "-o", tmp / "out", "--model", _damaged_default_model(tmp, damage)]


def _sparse_out_of_range(tmp: Path) -> list[object]:
    def damage(tensors: dict) -> None:
        tensors["down.0.block.conv1.smb.index"][3] = 10**6
    return ["upscale", _rgb(tmp / "a.png"), "-o", tmp / "out", "--model", _damaged_default_model(tmp, damage)]


def _train_without_teacher(tmp: Path) -> list[object]:
    teacher = tmp / "runs" / "resshift-small-x4" / "model.safetensors"  # where its recipe would write it
    return ["train", "bimacosr-small-x4", "--set", f"teacher={teacher}", "--set", f"out_dir={tmp / 'runs'}"]


def _option(*extra: object) -> object:
    def setup(tmp: Path) -> list[object]:
        return ["upscale", _rgb(tmp / "a.png"), "-o", tmp / "out", *extra]
    return setup


REFUSED = [
    ("same name in one folder", _same_stem, 1, r"photo\.jpg and .*photo\.png would both be written to .*photo_x4\.png"),
    ("-o is a file", _out_is_file, 1, r"-o .*out: exists and is a file"),
    ("-o under a file", _out_under_file, 1, r"-o .*sub: cannot be created, .*out is a file"),
    ("output name is a folder", _out_taken_by_folder, 1, r"a_x4\.png: is a folder"),
    ("output would replace its input", _replaces_input, 1, r"a\.png: its output .* would replace it"),
    ("animated GIF", _animated, 1, r"anim\.gif: animated image with 3 frames"),
    ("float TIFF out of range", _bad_float_tiff, 1, r"hdr\.tif: float TIFF with values in \[4, 4\]"),
    ("missing input", _missing, 1, r"no such file or folder: .*nothere\.png"),
    ("--suffix with unknown field", _bad_suffix, 1, r"--suffix '\{name\}'"),
    ("eval --json unwritable", _json_unwritable, 1, r"--json .*r\.json: cannot be created, .*blocker is a file"),
    ("train steps=-5", _train_negative_steps, 1, r"steps = -5 is outside"),
    ("train data.batch_size=0", _train_zero_batch, 1, r"data\.batch_size = 0 is outside"),
    ("train optim.lr=0", _train_zero_lr, 1, r"optim\.lr = 0\.0 is outside"),
    ("--steps 0", _option("--steps", 0), 2, r"--steps: must be a positive integer, got '0'"),
    ("--tile-overlap -1", _option("--tile-overlap", -1), 2, r"--tile-overlap: must be an integer ≥ 0"),
    ("--tile 0", _option("--tile", 0), 2, r"--tile: must be a positive integer"),
    ("--tile too small for the overlap", _option("--tile", 48), 1, r"--tile must exceed twice the overlap"),
    ("--outscale 0", _option("--outscale", 0), 2, r"--outscale: must be a number above 0"),
    ("--outscale nan", _option("--outscale", "nan"), 2, r"--outscale: must be a number above 0"),
    ("--threads 0", _option("--threads", 0), 2, r"--threads: must be a positive integer"),
    ("--ext gif", _option("--ext", "gif"), 2, r"--ext: invalid choice"),
    ("--scale disagrees", _option("--scale", 2), 1, r"is a x4 model; x2 was requested"),
    ("--scale 1000", _option("--model", "bicubic", "--scale", 1000), 2, r"--scale: must be an integer from 2 to 16"),
    ("--seed beyond 64 bits", _option("--seed", 2**70), 2, r"--seed: must be an integer from 0 to 9223372036854775807"),
    ("eval of an image too small to score", _eval_too_small, 1, r"small\.png: too small to score \(crop_border 4"),
    ("model header nested 100,000 deep", _deep_header, 1, r"deep\.safetensors: the binsr header is nested too deeply"),
    ("model file with a NaN weight", _nan_weights, 1, r"damaged\.safetensors: tensor 'head\.weight' holds NaN"),
    ("sparse index out of range", _sparse_out_of_range, 1,
     r"damaged\.safetensors: layer 'down\.0\.block\.conv1\.smb': sparse index 1000000 is outside its 64x64 weight"),
    ("--steps beyond the model's T", _option("--model", "bidiffsr-x4", "--steps", 2001), 1,
     r"--steps 2001: bidiffsr-x4 was trained with 2000 diffusion steps, so DDIM takes at most 2000"),
    ("train a student without its teacher", _train_without_teacher, 1,
     r"teacher .*model\.safetensors: no such model file; it is what 'binsr train resshift-small-x4' writes"),
    ("--model a missing file", _option("--model", "missing.safetensors"), 1, r"no such model file: missing\.safetensors"),
]


@pytest.mark.parametrize("setup,code,message", [case[1:] for case in REFUSED], ids=[case[0] for case in REFUSED])
def test_refused_with_one_line_before_any_work(setup, code, message, tmp_path, capsys):
    argv = setup(tmp_path)
    before = _files(tmp_path)
    got, out, err = _run(argv, capsys)
    assert got == code, err
    errors = _errors(err)
    assert errors and all(line.startswith("binsr") for line in errors), err
    assert any(__import__("re").search(message, line) for line in errors), err
    assert _files(tmp_path) == before  # nothing written, nothing changed, no temporary files left behind
    assert "wrote" not in out


def test_unwritable_output_folder_is_named(tmp_path, capsys, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if Path(path) == locked else real(path, mode))
    code, _, err = _run(["upscale", _rgb(tmp_path / "a.png"), "-o", locked / "out"], capsys)
    assert code == 1 and _errors(err) == [f"binsr: error: -o {locked / 'out'}: cannot write into {locked} "
                                          f"(permission denied)"]


def test_read_only_output_folder_is_named_as_read_only(tmp_path, capsys, monkeypatch):
    locked = tmp_path / "mounted"
    locked.mkdir()
    real = os.statvfs

    class ReadOnly:
        f_flag = os.ST_RDONLY

    monkeypatch.setattr(os, "statvfs", lambda path: ReadOnly() if Path(path) == locked else real(path))
    code, _, err = _run(["upscale", _rgb(tmp_path / "a.png"), "-o", locked / "out"], capsys)
    assert code == 1 and _errors(err) == [f"binsr: error: -o {locked / 'out'}: cannot write into {locked} "
                                          f"(read-only file system)"]


def test_every_problem_is_reported_at_once(tmp_path, capsys):
    for name in ("x.jpg", "x.png", "y.jpg", "y.png"):
        _rgb(tmp_path / "in" / name)
    code, _, err = _run(["upscale", tmp_path / "in", "-o", tmp_path / "out", "--ext", "png"], capsys)
    assert code == 1 and len(_errors(err)) == 2 and not (tmp_path / "out").exists()


# --- handled: the run succeeds and keeps what the user had ------------------------------------------------------

def test_same_names_in_subfolders_keep_their_folders(tmp_path, capsys):
    for path in ("dup/photo.jpg", "dup/s1/photo.png", "dup/s2/photo.png"):
        _rgb(tmp_path / path)
    code, out, err = _run(["upscale", tmp_path / "dup", "-o", tmp_path / "out", "--quiet"], capsys)
    assert code == 0, err
    assert sorted(_files(tmp_path / "out")) == ["photo_x4.jpg", "s1/photo_x4.png", "s2/photo_x4.png"]
    assert "wrote 3 image(s)" in out


def test_existing_outputs_are_skipped_then_replaced_with_overwrite(tmp_path, capsys):
    source = _rgb(tmp_path / "a.png")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a_x4.png").write_bytes(b"an earlier result")
    code, out, _ = _run(["upscale", source, "-o", tmp_path / "out", "--quiet"], capsys)
    assert code == 0 and "skipped 1 existing file(s); --overwrite replaces them" in out
    assert (tmp_path / "out" / "a_x4.png").read_bytes() == b"an earlier result"
    code, out, _ = _run(["upscale", source, "-o", tmp_path / "out", "--quiet", "--overwrite"], capsys)
    assert code == 0 and read_picture(tmp_path / "out" / "a_x4.png").rgb.shape == (3, 80, 96)


def test_output_folder_inside_the_input_is_never_read_as_input(tmp_path, capsys):
    for folder, out in (("same", "same"), ("nested", "nested/results")):
        _rgb(tmp_path / folder / "a.png")
        for _ in range(2):  # the second run finds the first one's output in the input folder
            code, _, err = _run(["upscale", tmp_path / folder, "-o", tmp_path / out, "--quiet"], capsys)
            assert code == 0, err
    assert sorted(_files(tmp_path / "same")) == ["a.png", "a_x4.png"]
    assert sorted(_files(tmp_path / "nested")) == ["a.png", "results/a_x4.png"]


def test_exif_orientation_is_applied(tmp_path, capsys):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 28×20 (W×H), shown rotated: 20×28
    _rgb(tmp_path / "rot.jpg", 20, 28, exif=exif)
    code, _, err = _run(["upscale", tmp_path / "rot.jpg", "-o", tmp_path / "out", "--quiet"], capsys)
    assert code == 0, err
    with Image.open(tmp_path / "out" / "rot_x4.jpg") as im:
        assert im.size == (80, 112)


def test_alpha_16_bit_gray_and_icc_are_kept(tmp_path, capsys):
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    rgba = np.concatenate([smooth_image(RNG, 20, 24), RNG.integers(0, 256, (20, 24, 1), dtype=np.uint8)], -1)
    Image.fromarray(rgba).save(tmp_path / "rgba.png", icc_profile=icc)
    import png

    deep = (RNG.random((20, 24, 3)) * 65535).astype(np.uint16)
    with open(tmp_path / "deep.png", "wb") as handle:
        png.Writer(24, 20, bitdepth=16, greyscale=False).write(handle, deep.reshape(20, -1))
    Image.fromarray(smooth_image(RNG, 20, 24)[..., 0]).save(tmp_path / "gray.jpg")
    code, _, err = _run(["upscale", tmp_path / "rgba.png", tmp_path / "deep.png", tmp_path / "gray.jpg",
                         "-o", tmp_path / "out", "--quiet"], capsys)
    assert code == 0, err
    out = read_picture(tmp_path / "out" / "rgba_x4.png")
    source = read_picture(tmp_path / "rgba.png")
    expected = imresize(source.alpha.double(), size=(80, 96)).clamp(0, 1)
    assert out.alpha is not None and out.icc == icc
    assert (out.alpha.double() - expected).abs().max() <= 0.5 / 255 + 1e-6  # MATLAB bicubic, rounded once
    assert read_picture(tmp_path / "out" / "deep_x4.png").bits == 16
    with Image.open(tmp_path / "out" / "gray_x4.jpg") as im:
        assert im.mode == "L" and im.size == (96, 80)


def test_alpha_model_option_runs_the_model_on_alpha(tmp_path, capsys):
    Image.fromarray(np.concatenate([smooth_image(RNG, 20, 24), smooth_image(RNG, 20, 24)[..., :1]], -1)).save(
        tmp_path / "a.png")
    for mode in ("bicubic", "model"):
        code, _, err = _run(["upscale", tmp_path / "a.png", "-o", tmp_path / mode, "--alpha", mode, "--quiet"], capsys)
        assert code == 0, err
    bicubic, model = (read_picture(tmp_path / mode / "a_x4.png").alpha for mode in ("bicubic", "model"))
    assert bicubic.shape == model.shape == (1, 80, 96) and not torch.equal(bicubic, model)


def test_suffix_ext_and_outscale(tmp_path, capsys):
    source = _rgb(tmp_path / "a.png", 20, 28)
    code, _, err = _run(["upscale", source, "-o", tmp_path / "out", "--suffix", "", "--ext", "webp",
                         "--outscale", 2.5, "--quiet"], capsys)
    assert code == 0, err
    with Image.open(tmp_path / "out" / "a.webp") as im:
        assert im.format == "WEBP" and im.size == (70, 50)
    code, _, _ = _run(["upscale", source, "-o", tmp_path / "out", "--outscale", 3, "--quiet"], capsys)
    assert code == 0 and (tmp_path / "out" / "a_x3.png").is_file()


def test_every_pillow_format_in_folders_and_float_tiffs(tmp_path, capsys):
    import tifffile

    for name in ("a.webp", "b.gif", "c.bmp"):
        _rgb(tmp_path / "in" / name)
    tifffile.imwrite(tmp_path / "in" / "d.tif", RNG.random((20, 24, 3)).astype(np.float32), photometric="rgb")
    code, out, err = _run(["upscale", tmp_path / "in", "-o", tmp_path / "out", "--quiet"], capsys)
    assert code == 0 and "wrote 4 image(s)" in out, err
    assert sorted(_files(tmp_path / "out")) == ["a_x4.webp", "b_x4.png", "c_x4.png", "d_x4.png"]
    assert read_picture(tmp_path / "out" / "d_x4.png").bits == 16


def test_steps_on_a_one_step_model_is_a_warning(tmp_path, capsys):
    code, _, err = _run(["upscale", _rgb(tmp_path / "a.png"), "-o", tmp_path / "out", "--steps", 5, "--quiet"], capsys)
    assert code == 0 and "binsr: warning: --steps 5 is ignored" in err


def test_decompression_bomb_names_the_file(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)
    code, _, err = _run(["upscale", _rgb(tmp_path / "big.png"), "-o", tmp_path / "out"], capsys)
    assert code == 1 and "big.png: too large to decode safely" in err


def test_a_folder_gives_the_same_files_as_single_runs(tmp_path, capsys):
    names = ["a.png", "b.jpg", "c.png"]
    for name in names:
        _rgb(tmp_path / "in" / name, 18 + len(name), 24)
    assert _run(["upscale", tmp_path / "in", "-o", tmp_path / "folder", "--quiet"], capsys)[0] == 0
    for name in names:
        assert _run(["upscale", tmp_path / "in" / name, "-o", tmp_path / "single", "--quiet"], capsys)[0] == 0
    assert _files(tmp_path / "folder") == _files(tmp_path / "single")


# --- two runs into one folder: each file written once, nothing replaced, the counts true ------------------------

def test_two_runs_into_one_folder_write_each_file_once_and_count_what_they_wrote(tmp_path: Path) -> None:
    import re
    import subprocess
    import sys

    for index in range(30):
        _rgb(tmp_path / "in" / f"{index:02d}.png", 16, 16)
    common = [sys.executable, "-m", "binsr", "upscale", str(tmp_path / "in"), "--model", "bicubic", "--suffix", "up",
              "-o", str(tmp_path / "out"), "--quiet", "--threads", "1"]
    runs = [subprocess.Popen(common + extra, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for extra in (["--scale", "4"], ["--scale", "2", "--outscale", "2"])]  # x4: 64 px wide; x2: 32 px
    results = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], results
    # (a run that finds every output there when it plans says so, and writes nothing)
    wrote = [int(found.group(1)) if (found := re.search(r"wrote (\d+) image", out)) else 0 for out, _ in results]
    assert all("wrote" in out or "skipped 30 existing file(s)" in out for out, _ in results), results
    widths = [Image.open(path).size[0] for path in sorted((tmp_path / "out").glob("*_up.png"))]
    assert len(widths) == 30 and sum(wrote) == 30  # every output exactly once, by one run or the other
    assert (widths.count(64), widths.count(32)) == tuple(wrote)  # each run's count is the files it made
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temporary left behind


def test_an_output_that_appears_while_the_run_writes_is_left_alone(tmp_path: Path, capsys, monkeypatch) -> None:
    from binsr.pipelines import picture

    _rgb(tmp_path / "in" / "a.png")
    _rgb(tmp_path / "in" / "b.png")
    write_upscaled = picture.write_upscaled

    def another_process_first(path, *args, **kwargs):  # someone writes b's output after the run was planned
        if Path(path).name == "b_x4.png":
            Path(path).write_bytes(b"theirs")
        return write_upscaled(path, *args, **kwargs)

    monkeypatch.setattr(picture, "write_upscaled", another_process_first)
    code, out, err = _run(["upscale", tmp_path / "in", "-o", tmp_path / "out", "--model", "bicubic", "--scale", "4"],
                          capsys)
    assert code == 0 and "wrote 1 image(s)" in out and "skipped 1 file(s) that appeared" in out
    assert (tmp_path / "out" / "b_x4.png").read_bytes() == b"theirs"
    assert read_picture(tmp_path / "out" / "a_x4.png").rgb.shape == (3, 80, 96)


def test_more_threads_than_cores_are_capped_with_a_warning_and_a_dotted_suffix_is_a_name(tmp_path, capsys):
    from binsr.utils.threads import allowed_cores

    cores = len(allowed_cores())
    code, out, err = _run(["upscale", _rgb(tmp_path / "a.png"), "-o", tmp_path / "out", "--model", "bicubic",
                           "--scale", 4, "--threads", 999, "--suffix", "..", "--quiet"], capsys)
    assert code == 0, err
    assert f"binsr: warning: --threads 999: this process may use {cores} core(s); using {cores}" in err
    assert sorted(_files(tmp_path / "out")) == ["a_...png"]


def test_an_icon_smaller_than_the_networks_multiple_is_upscaled(tmp_path, capsys):
    for side in (16, 1):
        code, out, err = _run(["upscale", _rgb(tmp_path / f"icon{side}.png", side, side), "-o", tmp_path / "out",
                               "--quiet"], capsys)  # the default model works on multiples of 128 output pixels
        assert code == 0, err
        assert read_picture(tmp_path / "out" / f"icon{side}_x4.png").rgb.shape == (3, 4 * side, 4 * side)


def test_sigterm_cleans_up_like_ctrl_c_and_stale_temporaries_are_removed(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    # SIGTERM while an output is being written: its temporary is removed, nothing half-written is left
    script = (
        "import os, signal, sys\n"
        "from binsr import cli\n"
        "from binsr.utils.fs import atomic_write\n"
        "signal.signal(signal.SIGTERM, cli._terminate)\n"
        "try:\n"
        f"    with atomic_write({str(tmp_path / 'out.png')!r}) as handle:\n"
        "        handle.write(b'half')\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "except cli.Terminated:\n"
        "    sys.exit(143)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 128 + signal.SIGTERM, done.stderr
    assert list(tmp_path.iterdir()) == []
    # a temporary that a killed binsr process (a PID no process has) left behind goes with the next write
    out = tmp_path / "out"
    out.mkdir()
    stale, foreign = out / ".a_x4.png.4194999.k2j.tmp", out / ".a_x4.png.notes.tmp"
    stale.write_bytes(b"half")
    foreign.write_bytes(b"not binsr's")
    code = subprocess.run([sys.executable, "-m", "binsr", "upscale", str(_rgb(tmp_path / "a.png")), "-o", str(out),
                           "--model", "bicubic", "--scale", "4", "--quiet"], capture_output=True).returncode
    assert code == 0 and not stale.exists() and foreign.exists() and (out / "a_x4.png").is_file()


def test_one_bad_file_among_many_is_reported_after_the_good_ones_are_written(tmp_path, capsys):
    for index in range(5):
        _rgb(tmp_path / "in" / f"good{index}.png")
    (tmp_path / "in" / "bad.png").write_bytes((tmp_path / "in" / "good0.png").read_bytes()[:60])
    code, out, err = _run(["upscale", tmp_path / "in", "-o", tmp_path / "out", "--model", "bicubic", "--scale", 4,
                           "--quiet"], capsys)
    assert code == 1 and "wrote 5 image(s)" in out
    assert len(_files(tmp_path / "out")) == 5
    errors = _errors(err)
    assert errors[0].startswith("binsr: error: ") and "bad.png: truncated or corrupt" in errors[0]
    assert errors[1] == "binsr: error: 1 input(s) could not be read and were not upscaled"


def test_a_full_disk_names_the_file_and_what_was_written(tmp_path, capsys, monkeypatch):
    import errno

    from binsr.pipelines import picture

    for name in ("a", "b", "c"):
        _rgb(tmp_path / "in" / f"{name}.png")
    write_upscaled = picture.write_upscaled

    def disk_fills_at_b(path, *args, **kwargs):
        if Path(path).name == "b_x4.png":
            raise OSError(errno.ENOSPC, "No space left on device")
        return write_upscaled(path, *args, **kwargs)

    monkeypatch.setattr(picture, "write_upscaled", disk_fills_at_b)
    code, out, err = _run(["upscale", tmp_path / "in", "-o", tmp_path / "out", "--model", "bicubic", "--scale", 4,
                           "--quiet"], capsys)
    out_dir = tmp_path / "out"
    assert code == 1 and _errors(err) == [f"binsr: error: {out_dir / 'b_x4.png'}: no space left on the device, so it "
                                          f"was not written; the 1 before it were written (the last: "
                                          f"{out_dir / 'a_x4.png'})"]
    assert sorted(_files(out_dir)) == ["a_x4.png"]


def test_links_are_followed_once_and_hidden_entries_follow_one_rule(tmp_path, capsys):
    inputs = tmp_path / "in"
    for path in ("a.png", "sub/b.png", ".hidden/c.png", ".d.png"):
        _rgb(inputs / path)
    _rgb(tmp_path / "elsewhere" / "e.png")
    (inputs / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)  # a folder link: read
    (inputs / "broken.png").symlink_to(tmp_path / "nothere.png")                     # a broken link: said
    (inputs / "sub" / "loop").symlink_to(inputs, target_is_directory=True)           # a loop: read once
    code, out, err = _run(["upscale", inputs, "-o", tmp_path / "out", "--model", "bicubic", "--scale", 4, "--quiet"],
                          capsys)
    assert code == 0, err
    assert sorted(_files(tmp_path / "out")) == ["a_x4.png", "linked/e_x4.png", "sub/b_x4.png"]
    assert "left out 4 item(s) of the input folders" in out
    from binsr.image import scan_images

    assert sorted(scan_images(inputs).skipped) == sorted([
        f"{inputs / '.d.png'} (hidden)", f"{inputs / '.hidden'} (hidden)", f"{inputs / 'broken.png'} (broken link)",
        f"{inputs / 'sub' / 'loop'} (a link to a folder read already)"])


def test_demo_on_a_taken_port_says_so_before_announcing_anything() -> None:
    import socket
    import subprocess
    import sys

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "binsr", "demo", "--host", "127.0.0.1", "--port", str(port)],
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stdout == ""  # no URL announced
    assert done.stderr == (f"binsr: error: --port {port}: 127.0.0.1:{port} is already in use (another server?); "
                           f"choose another with --port\n")


def test_demo_errors_name_the_upload_never_the_servers_folders(tmp_path: Path) -> None:
    pytest.importorskip("gradio")
    from binsr.demo import DemoRunner
    from binsr.demo.page import public_message
    from binsr.errors import BinsrError

    uploads = tmp_path / "binsr-demo-k3j" / "uploads" / "5f2e9a0c"
    good = _rgb(uploads / "photo.png")
    bad = uploads / "broken.png"
    bad.write_bytes(good.read_bytes()[:60])
    runner = DemoRunner(tmp_path / "binsr-demo-k3j" / "results", threads=1)
    for image, model_file, expected in ((bad, None, "broken.png: truncated or corrupt image"),
                                        (good, bad, "broken.png: not a safetensors model file")):
        with pytest.raises(BinsrError) as raised:
            runner.upscale(str(image), model_file=str(model_file) if model_file else None)
        shown = public_message(str(raised.value), str(image), str(model_file) if model_file else None, None)
        assert shown.startswith(expected) and "binsr-demo" not in shown and str(tmp_path) not in shown, shown
