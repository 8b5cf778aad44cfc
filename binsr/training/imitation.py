"""Distillation from any registered upscaler (a peer such as ``realesrgan-x4plus``, a shipped model, or a
model file of any kind) into a one-step ResShift-family student: the student learns the teacher's *images*.

The student's one-step output x̂₀ = f̂(x_T, y, T) is decoded to an image Ŝ in [0, 1] and pulled towards the
teacher's upscaling of the same LR patch, T(lr), and optionally towards the HR patch:

    L = w_t · ρ(Ŝ, T(lr)) + w_r · ρ(Ŝ, HR) + w_e · ‖∇Ŝ − ∇T(lr)‖₁ + w_a · L_G(Ŝ)

with ρ the L1 (Real-ESRGAN's pixel loss; default) or MSE distance, ∇ the horizontal and vertical pixel
differences, which weigh the teacher's edges and texture more than a pixel loss does, and L_G the adversarial
loss of a patch discriminator trained alongside (``adversarial``; :mod:`binsr.training.adversary`): pixel
losses alone teach the average of the teacher's detail, which is blurry. The teacher runs once
per training patch: with ``cache_dir`` its outputs are kept on disk keyed by the teacher's files and the LR
patch, so later runs with the same data seed (another loss, another binarization) read them back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from binsr.config import check_ranges
from binsr.diffusion.distill import start_states
from binsr.diffusion.resshift import Denoiser, ResShift
from binsr.models.autoencoder import Autoencoder
from binsr.pipelines import Upscaler, is_peer, resolve
from binsr.pipelines.peers import peer_files
from binsr.training.adversary import Adversary, AdversaryConfig
from binsr.utils.tensor_cache import TensorCache, content_key

LOSSES = {"l1": F.l1_loss, "mse": F.mse_loss}


@dataclass
class ImitationConfig:
    """The losses of distillation from an upscaler teacher, and its output cache.

    Fields (default): ``teacher_weight`` w_t of ρ(student, teacher image) (1.0); ``regression_weight`` w_r of
    ρ(student, HR) (0.0); ``edge_weight`` w_e of the L1 distance of the images' pixel differences (0.0);
    ``loss`` ρ, ``l1`` or ``mse`` (``l1``); ``cache_size`` teacher images kept in memory, a count (0);
    ``cache_dir`` a folder of teacher images kept on disk (None: none); ``adversarial`` the adversarial loss
    and its discriminator (:class:`~binsr.training.adversary.AdversaryConfig`; None: none).
    """

    teacher_weight: float = 1.0
    regression_weight: float = 0.0
    edge_weight: float = 0.0
    loss: str = "l1"
    cache_size: int = 0
    cache_dir: str | None = None
    adversarial: AdversaryConfig | None = None

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        check_ranges(self, teacher_weight=(0.0, 1e6), regression_weight=(0.0, 1e6), edge_weight=(0.0, 1e6),
                     cache_size=(0, 10**9))


def teacher_fingerprint(name: str) -> str:
    """``name`` and a digest of the files it runs from (a peer's .param/.bin, a model file), so a cache
    never serves one teacher's images for another."""
    if name == "bicubic":
        return name
    files = peer_files(name) if is_peer(name) else (resolve(name),)
    digest = hashlib.blake2b(digest_size=16)
    for path in files:
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return f"{name}:{digest.hexdigest()}"


def pixel_differences(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, C, H, W) → horizontal (B, C, H, W−1) and vertical (B, C, H−1, W) neighbour differences."""
    return image[..., :, 1:] - image[..., :, :-1], image[..., 1:, :] - image[..., :-1, :]


class UpscalerImitation:
    """``loss(student, lr, hr, y, generators) -> (total, {"teacher": …, "regression": …, "edge": …,
    "adversarial": …})``.

    ``process`` and ``autoencoder`` (None: pixel space) are the student's; y is its condition state for lr.
    ``adversary`` is the discriminator's :class:`~binsr.training.adversary.Adversary` (None without one); the
    engine trains it after each step.
    """

    def __init__(self, process: ResShift, autoencoder: Autoencoder | None, teacher: Upscaler,
                 config: ImitationConfig, fingerprint: str) -> None:
        self.process, self.autoencoder, self.teacher = process, autoencoder, teacher
        self.config, self.fingerprint = config, fingerprint
        self.cache = TensorCache(config.cache_size, config.cache_dir)
        self.teacher_calls = 0  # patches the teacher has upscaled (cache misses)
        self.adversary = Adversary(config.adversarial) if config.adversarial is not None else None

    @torch.no_grad()
    def teacher_outputs(self, lr: torch.Tensor) -> torch.Tensor:
        """T(lr) per sample (B, 3, h·s, w·s) in [0, 1], from the cache where the same patch was seen before."""
        found, computed = self.cache.get_or_compute(
            lr.shape[0], lambda i: content_key(lr[i], prefix=self.fingerprint),
            lambda rows: self.teacher.upscale(lr[rows].to(getattr(self.teacher, "device", "cpu"))))
        self.teacher_calls += computed
        return torch.stack(found).to(lr)

    def student_image(self, student: Denoiser, y: torch.Tensor,
                      generators: Sequence[torch.Generator]) -> torch.Tensor:
        """The student's one-step output as an image in [0, 1] (not clamped, so gradients reach every pixel)."""
        x0 = self.process.one_step(student, start_states(self.process, y, generators).to(y), y)
        return (self.autoencoder.decode(x0) if self.autoencoder is not None else x0) / 2 + 0.5

    def loss(self, student: Denoiser, lr: torch.Tensor, hr: torch.Tensor, y: torch.Tensor,
             generators: Sequence[torch.Generator]) -> tuple[torch.Tensor, dict[str, float]]:
        config, distance = self.config, LOSSES[self.config.loss]
        image = self.student_image(student, y, generators)
        total, parts = image.new_zeros(()), {}
        adversarial = config.adversarial
        real_is_teacher = adversarial is not None and adversarial.real == "teacher"
        target = self.teacher_outputs(lr) if config.teacher_weight or config.edge_weight or real_is_teacher else None
        terms = [("teacher", config.teacher_weight, lambda: distance(image, target)),
                 ("regression", config.regression_weight, lambda: distance(image, hr)),
                 ("edge", config.edge_weight, lambda: sum(F.l1_loss(a, b) for a, b in
                                                          zip(pixel_differences(image), pixel_differences(target))))]
        if self.adversary is not None:
            real = target if real_is_teacher else hr
            terms.append(("adversarial", adversarial.weight, lambda: self.adversary.generator_loss(image, real)))
        for name, weight, term in terms:
            if weight:
                value = term()
                total = total + weight * value
                parts[name] = float(value.detach())
        return total, parts
