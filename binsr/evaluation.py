"""Benchmark an upscaler on a dataset: PSNR, SSIM and (when available) LPIPS per image and on average; NIQE
(no reference) on request, and alone for LR images that have no HR."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from binsr.complexity import count_complexity
from binsr.errors import DataError
from binsr.image.color import quantize
from binsr.metrics.lpips import LPIPS, lpips_distance
from binsr.metrics.niqe import niqe
from binsr.metrics.psnr_ssim import psnr, ssim
from binsr.models.denoiser import bind_timesteps
from binsr.pipelines import PEERS, is_peer, pipeline_type, read_model_spec
from binsr.pipelines.peers import peer_files
from binsr.pipelines.base import Upscaler
from binsr.pipelines.shipped import shipped_path


@dataclass
class ImageScore:
    """Metrics of one image. PSNR in dB; PSNR and SSIM None without an HR image, LPIPS None when the metric
    is unavailable, NIQE None when not asked for. ``channels``: what PSNR/SSIM compared ("y", "rgb", or
    "gray" for single-channel HR files)."""

    name: str
    psnr: float | None
    ssim: float | None
    channels: str
    lpips: float | None = None
    niqe: float | None = None

    def metrics(self) -> dict[str, float]:
        """The metrics this image has, by name."""
        return {k: getattr(self, k) for k in METRICS if getattr(self, k) is not None}


METRICS = ("psnr", "ssim", "lpips", "niqe")


@dataclass
class EvalResult:
    """All scores of one (model, dataset, scale) run and how they were computed."""

    model: str
    dataset: str
    scale: int
    channels: str
    crop_border: int
    per_image: list[ImageScore] = field(default_factory=list)
    info: dict[str, Any] | None = None  # describe_model(): method, bits, Params, OPs

    def mean(self) -> dict[str, float]:
        """Means over images of each metric every image has."""
        return {k: _mean([s.metrics()[k] for s in self.per_image]) for k in METRICS
                if self.per_image and all(k in s.metrics() for s in self.per_image)}

    def to_dict(self) -> dict[str, Any]:
        """JSON form: {"model", "dataset", "scale", "mean", "per_image", ...}."""
        per_image = [{"name": score.name, **score.metrics(), "channels": score.channels}
                     for score in self.per_image]
        return {
            "model": self.model,
            "dataset": self.dataset,
            "scale": self.scale,
            "mean": self.mean(),
            "per_image": per_image,
            "protocol": {"channels": self.channels, "grayscale_files": "gray" if self.channels == "y" else self.channels,
                         "crop_border": self.crop_border, "quantized": "8-bit"},
            **({"model_info": self.info} if self.info is not None else {}),
        }


def evaluate(
    upscaler: Upscaler,
    dataset: Dataset,
    dataset_name: str,
    lpips_model: LPIPS | None = None,
    channels: str = "y",
    device: str | torch.device = "cpu",
    progress: bool = True,
    with_niqe: bool = False,
) -> EvalResult:
    """Upscale every LR image of ``dataset`` and score it against its HR image (border = scale).

    ``channels`` "y" (papers) or "rgb". With "y", images whose HR file is single-channel are scored on
    their gray values, as MATLAB benchmark scripts do (``if size(im, 3) == 3, rgb2ycbcr``): on Set14
    (bridge.png) this is what makes the published bicubic numbers come out. ``with_niqe`` adds NIQE of
    the 8-bit result (Y channel, same border). Samples without ``"hr"`` (LR photos) get NIQE only.
    """
    scale = upscaler.scale
    result = EvalResult(upscaler.name, dataset_name, scale, channels, crop_border=scale)
    for index in tqdm(range(len(dataset)), desc=f"{upscaler.name} on {dataset_name} x{scale}",
                      unit="img", disable=not progress):
        sample = dataset[index]
        lr, hr = sample["lr"].to(device), sample.get("hr")
        with torch.no_grad():
            sr = upscaler.upscale(lr.unsqueeze(0))[0]
        score = ImageScore(name=sample["name"], psnr=None, ssim=None, channels=channels)
        if hr is not None:
            hr = hr.to(device)
            if sr.shape != hr.shape:
                raise ValueError(f"{sample['name']}: the model returned {tuple(sr.shape)} for HR {tuple(hr.shape)}")
            score.channels = "gray" if channels == "y" and sample.get("gray") else channels
            try:
                score.psnr = float(psnr(sr, hr, crop_border=scale, channels=score.channels))
                score.ssim = float(ssim(sr, hr, crop_border=scale, channels=score.channels))
            except ValueError as err:  # too small for the border or SSIM's window: say which image
                raise DataError(f"{sample['name']}: too small to score ({err})") from None
            if lpips_model is not None:
                score.lpips = float(lpips_distance(lpips_model, quantize(sr), hr))  # of the saved 8-bit image
        if with_niqe or hr is None:
            try:
                score.niqe = niqe(quantize(sr).cpu(), crop_border=scale)
            except ValueError as err:  # too small for NIQE's blocks: say which image
                raise DataError(f"{sample['name']}: {err}") from None
        result.per_image.append(score)
    return result


def describe_model(name_or_path: str, size: int = 256, count: bool = True, steps: int | None = None) -> dict[str, Any]:
    """Method, weight bits, Params and OPs of a model name or file, the columns of the papers' tables.

    Params = FP parameters + binary weights / 32 and OPs = FLOPs + BOPs / 64 for one network call
    that makes a ``size`` × ``size`` output (the BI-DiffSR convention; latent models run at
    size / factor). Counted on the architecture the file describes, so packed files give the same;
    ``count=False`` leaves Params and OPs None (no forward pass). ``sampling`` says how outputs were made
    (``steps``: the step count a model whose pipeline takes one was run with; None: the file's own default,
    else the pipeline's).
    """
    if name_or_path == "bicubic":
        return {"method": "bicubic", "bits": None, "params": 0.0, "ops": None, "ops_output_size": None,
                "sampling": "interpolation"}
    if is_peer(name_or_path):  # ncnn's graph is not counted: Params only
        params = peer_files(name_or_path)[1].stat().st_size / 2 if count else None  # fp16 weights, 2 bytes each
        return {"method": f"peer: {PEERS.get(name_or_path).summary}", "bits": 32, "params": params, "ops": None,
                "ops_output_size": None, "sampling": "1 network call (ncnn, fp32)"}
    spec = read_model_spec(shipped_path(name_or_path) or name_or_path)
    sampling = pipeline_type(spec.kind).sampling(spec, steps)
    method = spec.method
    info = {"method": method or "full precision", "bits": 1 if method else 32, "params": None, "ops": None,
            "ops_output_size": None, "sampling": sampling}
    if count:
        network = spec.network.build()  # untrained: the counts depend on shapes only
        bind_timesteps(network, spec.process.num_timesteps)
        side = size // spec.latent_factor
        counts = count_complexity(network, *network.example_inputs(side, side))
        info.update(params=counts.params, ops=counts.ops, ops_output_size=[size, size])
    return info


def _mean(values: list[float]) -> float:
    return math.fsum(values) / len(values) if values else float("nan")
