"""How much of an SR model's PSNR deficit is a global brightness offset (README, Ablations: +CP-Down/Up and
+CS-Fusion at 400 steps). For each model file: Set5 PSNR (Y, border = scale), the mean |Y error| per image
(gray levels, 0-255), and the PSNR after removing each image's per-channel mean error.

Usage: python scripts/brightness_offset.py --scale 2 --steps 10 runs/ablate/NAME/model.safetensors ...
"""
import argparse
import statistics

import torch

import binsr
from binsr.data import SREvalDataset, resolve_data_dir
from binsr.image.color import rgb_to_y
from binsr.metrics.psnr_ssim import psnr

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("models", nargs="+")
parser.add_argument("--data", default="Set5")
parser.add_argument("--scale", type=int, default=2)
parser.add_argument("--steps", type=int, default=10)
args = parser.parse_args()
dataset = SREvalDataset(resolve_data_dir(args.data), args.scale)
border = args.scale
for model in args.models:
    upscaler = binsr.load(model, steps=args.steps)
    plain, offsets, centred = [], [], []
    for index in range(len(dataset)):
        sample = dataset[index]
        torch.manual_seed(0)
        sr, hr = upscaler.upscale(sample["lr"][None])[0], sample["hr"]
        error = rgb_to_y(sr) - rgb_to_y(hr)
        offsets.append(float(error[..., border:-border, border:-border].mean().abs()))
        plain.append(float(psnr(sr, hr, crop_border=border)))
        shift = (sr - hr).mean(dim=(1, 2), keepdim=True)
        centred.append(float(psnr((sr - shift).clamp(0, 1), hr, crop_border=border)))
    print(f"{model}: PSNR {statistics.fmean(plain):.2f} dB, mean |Y error| {statistics.fmean(offsets):.4f}, "
          f"PSNR without the mean error {statistics.fmean(centred):.2f} dB")
