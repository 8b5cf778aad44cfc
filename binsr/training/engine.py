"""The training engine: one loop for every diffusion SR recipe, on one CPU or many GPUs.

Reproducible by construction: data order is a seeded permutation per epoch, each process takes its
contiguous slice of the global batch, and each sample's noise and timestep come from
(seed, step, global sample index). Hence ``torchrun --nproc_per_node=N`` with batch B gives the same
training as one process with batch N·B, and ``--resume`` continues bit-exactly from the last
checkpoint (which stores optimizer, LR schedule, loss scaler and the RNG state used by dropout, and a task's
critic — a GAN's discriminator — with its optimizer).
"""

from __future__ import annotations

import copy
import csv
import math
import os
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from binsr.binary import set_training_progress
from binsr.config import to_dict
from binsr.data import SREvalDataset, SRTrainDataset, resolve_data_dir
from binsr.data.degraded_set import image_seed
from binsr.data.realesrgan import RealESRGANDegradation
from binsr.diffusion.sr3 import sample_generators
from binsr.errors import BinsrError, BinsrWarning
from binsr.metrics.psnr_ssim import psnr
from binsr.models.files import FORMAT_VERSION, save_model_file
from binsr.pipelines.model_file import ModelSpec
from binsr.training.checkpoint import (
    CorruptCheckpoint,
    load_checkpoint,
    resumable_checkpoints,
    save_checkpoint,
)
from binsr.training.config import OptimConfig, Recipe
from binsr.training.optim import lr_factor, make_optimizer
from binsr.training.tasks import make_task
from binsr.utils.fs import atomic_write


@dataclass
class TrainResult:
    steps: int
    final_loss: float
    val_psnr: float | None
    model_file: Path
    seconds: float


class Trainer:
    """``Trainer(config).train()``: train, validate, checkpoint, export ``runs/NAME/model.safetensors``."""

    def __init__(self, config: Recipe, resume: bool | str = False, data_root: str | None = None,
                 progress: bool = True) -> None:
        """``resume``: True continues from the newest intact checkpoint (an error if there is none), "auto"
        does so only where the run has checkpoints."""
        self.config, self.progress = config, progress
        self.rank, self.world, local_rank = _init_distributed(config.device)
        self.device = _device(config.device, local_rank)
        self.run_dir = Path(config.out_dir) / config.name
        has_checkpoints = bool(resumable_checkpoints(self.run_dir))
        if resume == "auto":  # torchrun --max-restarts runs the same command again after a failure
            resume = has_checkpoints
        elif not resume and has_checkpoints:
            raise BinsrError(f"{self.run_dir} already has checkpoints: pass --resume to continue, or use another name")
        elif resume and not has_checkpoints:
            raise BinsrError(f"--resume: no checkpoint in {self.run_dir}")

        torch.manual_seed(config.seed)
        self.task = make_task(config).to(self.device)
        self.model = self.task.model
        self.critic = getattr(self.task, "critic", None)  # a GAN's discriminator, trained after each step
        if self.critic is not None:
            self.critic.to(self.device)
            if self.world > 1:
                self.critic.distribute()
        self.ema = copy.deepcopy(self.model).requires_grad_(False) if config.optim.ema_decay else None
        self.net = DistributedDataParallel(self.model) if self.world > 1 else self.model
        self.optimizer = make_optimizer(self.model.parameters(), config.optim)
        self.lr_schedule = torch.optim.lr_scheduler.LambdaLR(self.optimizer,
                                                             lambda s: lr_factor(s, config.steps, config.optim))
        self.use_amp = config.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)

        data = config.data
        degradation = RealESRGANDegradation(data.realesrgan) if data.degradation == "realesrgan" else None
        self.val_degradation = degradation
        self.dataset = SRTrainDataset(resolve_data_dir(data.train, data_root), data.scale, data.patch_size,
                                      augment=data.augment, seed=config.seed, degradation=degradation)
        self.global_batch = data.batch_size * self.world
        self.dataset.repeat = max(1, math.ceil(self.global_batch / len(self.dataset.pairs)))
        self.val_dir = resolve_data_dir(data.val, data_root) if data.val else None

        self.step = 0
        if resume:
            state = self._resume_state()
            self.step = int(state["step"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.lr_schedule.load_state_dict(state["lr_schedule"])
            self.scaler.load_state_dict(state["scaler"])
            torch.set_rng_state(state["rng"])
            if self.critic is not None:
                if "critic" not in state:
                    raise BinsrError(f"--resume: the checkpoint in {self.run_dir} has no state for the recipe's "
                                     f"critic (the adversarial loss was added after it was written)")
                self.critic.load_state_dict(state["critic"])
            if self.device.type == "cuda" and "cuda_rng" in state:
                torch.cuda.set_rng_state(state["cuda_rng"], self.device)

    def _resume_state(self) -> dict[str, Any]:
        """The newest checkpoint that reads back intact, loaded into the model; a damaged one is named in a
        warning and the one before it is used."""
        problems = []
        for folder in resumable_checkpoints(self.run_dir):
            try:
                state = load_checkpoint(folder, self.model, self.ema)
            except CorruptCheckpoint as err:
                problems.append(str(err))
                continue
            for problem in problems:
                warnings.warn(f"{problem}; resuming from {folder.name} instead", BinsrWarning, stacklevel=3)
            return state
        raise BinsrError(f"--resume: no intact checkpoint in {self.run_dir} ({'; '.join(problems)})")

    # --- the model file every checkpoint and the final export carry ---------------------------
    def spec(self) -> dict[str, Any]:
        """The model file's header (format 2), validated like any file binsr reads."""
        header = {**self.task.spec(), "format": FORMAT_VERSION, "name": self.config.name,
                  "scale": self.config.data.scale, "packed": None, "sampling_steps": None,
                  "trained_steps": self.step, "recipe": {"task": self.config.task, **to_dict(self.config)}}
        return ModelSpec.parse(header).to_dict()

    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(lr, hr) batches of this process from ``self.step`` on, forever (epoch after epoch), from one
        DataLoader whose workers live across epochs: each index carries its epoch, which seeds its patch."""
        loader = DataLoader(self.dataset, batch_sampler=_EpochBatches(self, self.step),
                            num_workers=self.config.data.num_workers)
        for sample in loader:
            yield sample["lr"].to(self.device), sample["hr"].to(self.device)

    def train_step(self, lr: torch.Tensor, hr: torch.Tensor) -> float:
        self.net.train()
        batch = lr.shape[0]
        generators = sample_generators([(self.config.seed, self.step, self.rank * batch + i) for i in range(batch)])
        with torch.autocast(device_type=self.device.type, enabled=self.use_amp):
            loss, _ = self.task.loss(self.net, lr, hr, generators)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.config.optim.grad_clip:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.optim.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.lr_schedule.step()
        if self.critic is not None:
            self.critic.update()
        if self.ema is not None:
            _ema_update(self.ema, self.model, ema_decay(self.config.optim, self.step))
        return loss.detach().item()

    def validate(self) -> float | None:
        """Mean PSNR (Y, border = scale) of the model's outputs on the validation folder: its first
        ``data.val_limit`` images, each cut to its central ``data.val_crop``² HR pixels (bounded time and
        memory; the upscaler also tiles large outputs), with a progress bar. A model trained on Real-ESRGAN
        degradations is validated on them: each image's LR is the one ``binsr degrade VAL --seed 0`` makes."""
        if self.val_dir is None:
            return None
        net = self.ema if self.ema is not None else self.model
        upscaler = self.task.upscaler(net)
        scale, crop = self.config.data.scale, self.config.data.val_crop
        dataset = SREvalDataset(self.val_dir, scale)
        count = min(len(dataset), self.config.data.val_limit or len(dataset))
        scores = []
        for index in tqdm(range(count), desc="validate", unit="img", leave=False,
                          disable=not (self.progress and self.rank == 0)):
            sample = dataset[index]
            if self.val_degradation is not None:
                seed = image_seed(0, sample["name"])
                sample["lr"] = self.val_degradation(sample["hr"], torch.Generator().manual_seed(seed))
            lr, hr = _central_crop(sample, crop, scale)
            with torch.no_grad():
                sr = upscaler.upscale(lr[None].to(self.device))[0].cpu()
            scores.append(float(psnr(sr, hr, crop_border=scale)))
        self.model.train()
        return sum(scores) / len(scores)

    def _validation(self, log: _CsvLog, board: Any, bar: Any) -> float | None:
        val = self.validate()
        if val is not None:
            log.write(step=self.step, val_psnr=val)
            bar.write(f"step {self.step}: validation PSNR {val:.3f} dB")
            if board:
                board.add_scalar("val/psnr", val, self.step)
        return val

    def train(self) -> TrainResult:
        config, main = self.config, self.rank == 0
        log = _CsvLog(self.run_dir / "log.csv", keep_until=self.step) if main else None
        board = _tensorboard(self.run_dir) if main else None
        bar = tqdm(total=config.steps, initial=self.step, desc=config.name, unit="step",
                   disable=not (self.progress and main))
        started, loss, val = time.perf_counter(), float("nan"), None
        for lr_batch, hr_batch in self.batches():
            if self.step >= config.steps:
                break
            loss = self.train_step(lr_batch, hr_batch)
            self.step += 1
            set_training_progress(self.model, self.step / config.steps)
            bar.update(1)
            if self.step % config.log_every == 0 or self.step == config.steps:
                loss = _mean_over_processes(loss, self.world)
                bar.set_postfix(loss=f"{loss:.4f}", lr=f"{self.lr_schedule.get_last_lr()[0]:.2e}")
                if main:
                    log.write(step=self.step, loss=loss, lr=self.lr_schedule.get_last_lr()[0],
                              seconds=time.perf_counter() - started)
                    if board:
                        board.add_scalar("train/loss", loss, self.step)
            at_end = self.step == config.steps
            if (config.ckpt_every and self.step % config.ckpt_every == 0) or at_end:
                if main:
                    self._checkpoint()
                if self.world > 1:
                    dist.barrier()
            if main and config.val_every and self.step % config.val_every == 0 and not at_end:
                val = self._validation(log, board, bar)
        model_file = self.run_dir / "model.safetensors"
        if main:  # the last checkpoint and the model file come before the end-of-run validation: a kill
            save_model_file(model_file, self.ema if self.ema is not None else self.model, self.spec())
            val = self._validation(log, board, bar)  # during it loses no training
        bar.close()
        return TrainResult(self.step, loss, val, model_file, time.perf_counter() - started)

    def _checkpoint(self) -> None:
        state = {"step": self.step, "optimizer": self.optimizer.state_dict(),
                 "lr_schedule": self.lr_schedule.state_dict(), "scaler": self.scaler.state_dict(),
                 "rng": torch.get_rng_state()}
        if self.critic is not None:
            state["critic"] = self.critic.state_dict()
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        save_checkpoint(self.run_dir, self.step, self.model, self.ema, self.spec(), state,
                        self.config.keep_checkpoints)


def _central_crop(sample: dict[str, Any], crop: int | None, scale: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(LR, HR) of an eval sample cut to the central ``crop``² HR pixels (rounded to the scale; None: whole)."""
    lr, hr = sample["lr"], sample["hr"]
    if crop is None:
        return lr, hr
    height, width = lr.shape[-2:]
    size = max(1, crop // scale)
    top, left = max(0, (height - size) // 2), max(0, (width - size) // 2)
    lr = lr[..., top:top + size, left:left + size]
    return lr, hr[..., top * scale:(top + size) * scale, left * scale:(left + size) * scale]


class _EpochBatches:
    """The batch sampler of :meth:`Trainer.batches`: lists of (epoch, index) from ``step`` on, each epoch a
    fresh permutation seeded by (seed, epoch), this rank's share of each global batch."""

    def __init__(self, trainer: Trainer, step: int) -> None:
        self.seed, self.step = trainer.config.seed, step
        self.batch, self.global_batch = trainer.config.data.batch_size, trainer.global_batch
        self.count, self.start = len(trainer.dataset), trainer.rank * trainer.config.data.batch_size

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        per_epoch = self.count // self.global_batch
        epoch, position = divmod(self.step, per_epoch)
        while True:
            seed = int(np.random.SeedSequence([self.seed, epoch, 7]).generate_state(1)[0])
            order = torch.randperm(self.count, generator=torch.Generator().manual_seed(seed)).tolist()
            for k in range(position, per_epoch):
                first = k * self.global_batch + self.start
                yield [(epoch, index) for index in order[first:first + self.batch]]
            epoch, position = epoch + 1, 0


def _init_distributed(device: str) -> tuple[int, int, int]:
    """(rank, world size, local rank); joins the process group when started by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    shared_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    if (shared_store and int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0")) > 0
            and int(os.environ.get("GROUP_WORLD_SIZE", "1")) > 1 and os.environ.get("RANK") == "0"):
        warnings.warn("torchrun --max-restarts on several nodes: set TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 for "
                      "every agent, or workers restarted after a failure may not reconnect "
                      "(pytorch/pytorch#135712)", BinsrWarning, stacklevel=2)
    if world > 1 and not dist.is_initialized():
        use_nccl = torch.cuda.is_available() and device != "cpu"
        dist.init_process_group("nccl" if use_nccl else "gloo")
    if world > 1:
        return dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0"))
    return 0, 1, 0


def _device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BinsrError(f"device {name!r} requested but CUDA is not available here")
    return device


def ema_decay(optim: OptimConfig, step: int) -> float:
    """The EMA decay of the update after optimizer step ``step`` (0-based): ``optim.ema_decay``, capped at
    (1 + step)/(10 + step) while ``optim.ema_warmup`` (diffusers' EMAModel's warm-up), so that early updates
    move the average and a short run's EMA is not mostly its initial weights."""
    assert optim.ema_decay is not None
    return min(optim.ema_decay, (1 + step) / (10 + step)) if optim.ema_warmup else optim.ema_decay


@torch.no_grad()
def _ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    for average, current in zip(ema.parameters(), model.parameters()):
        average.lerp_(current, 1 - decay)
    for average, current in zip(ema.buffers(), model.buffers()):
        average.copy_(current)


def _mean_over_processes(value: float, world: int) -> float:
    if world == 1:
        return value
    tensor = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(tensor)
    return float(tensor) / world


def _tensorboard(run_dir: Path):  # noqa: ANN202
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # the tensorboard package is optional
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


class _CsvLog:
    """``log.csv`` (step, loss, lr, seconds, val_psnr); on resume, rows after the checkpoint are dropped."""

    FIELDS = ("step", "loss", "lr", "seconds", "val_psnr")

    def __init__(self, path: Path, keep_until: int) -> None:
        self.path = path
        rows = []
        if path.is_file():
            with open(path, newline="") as handle:
                rows = [r for r in csv.DictReader(handle) if int(r["step"]) <= keep_until]
        with atomic_write(path, "w") as handle:
            writer = csv.DictWriter(handle, self.FIELDS)
            writer.writeheader()
            writer.writerows(rows)

    def write(self, **values: float) -> None:
        with open(self.path, "a", newline="") as handle:
            csv.DictWriter(handle, self.FIELDS).writerow(values)
