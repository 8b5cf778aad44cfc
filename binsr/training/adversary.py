"""An adversarial loss for upscalers: a small patch discriminator trained alongside the student.

Pixel losses to a teacher's or the ground truth's images teach their *average*, which is blurry where the
LR admits many sharp answers. A discriminator D judges whether each ~30² patch region of an image looks like
a real one; the student is rewarded for fooling it (ESRGAN, Wang et al. 2018; Real-ESRGAN, Wang et al. 2021,
which weighs it 0.1 against an L1 loss of 1). The losses are the non-saturating logistic GAN's
(Goodfellow et al. 2014), averaged over D's output map:

    L_G = w_a · mean softplus(−D(Ŝ))            (added to the student's loss)
    L_D = mean softplus(−D(R)) + mean softplus(D(sg(Ŝ)))

with Ŝ the student's image, R the real one (the HR patch, or the teacher's image) and sg stop-gradient.
D (:class:`PatchDiscriminator`) is a PatchGAN (Isola et al. 2017) with spectral normalisation on every
convolution (Miyato et al. 2018), as Real-ESRGAN's discriminator has; it has its own Adam optimizer, and its
weights and optimizer state are part of every training checkpoint, so a resumed run continues bit-exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from binsr.config import check_ranges

REAL_IMAGES = ("hr", "teacher")


@dataclass
class AdversaryConfig:
    """The adversarial loss and its discriminator.

    Fields (default): ``weight`` w_a of the student's adversarial term (0.1); ``real`` what D is shown as real,
    ``hr`` (the ground-truth patch) or ``teacher`` (the teacher's image) (``hr``); ``channels`` D's width,
    its first layer's channels, doubled twice (32); ``lr`` D's Adam learning rate (1e-4); ``betas`` its Adam
    betas ((0.9, 0.99)).
    """

    weight: float = 0.1
    real: str = "hr"
    channels: int = 32
    lr: float = 1e-4
    betas: tuple[float, ...] = (0.9, 0.99)

    def __post_init__(self) -> None:
        if self.real not in REAL_IMAGES:
            raise ValueError(f"real must be one of {', '.join(REAL_IMAGES)}, got {self.real!r}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {list(self.betas)}")
        if self.weight <= 0:
            raise ValueError(f"weight must be > 0 (leave 'adversarial' out for no adversarial loss), got {self.weight}")
        check_ranges(self, weight=(0.0, 1e6), channels=(1, 1024), lr=(0.0, 1.0))


class PatchDiscriminator(nn.Module):
    """(B, 3, H, W) image in [0, 1] → (B, 1, H/8, W/8) logits, one per overlapping ~46² receptive field.

    Five spectrally normalised convolutions, LeakyReLU(0.2) between them: 3→c (3×3), c→2c, 2c→4c and 4c→4c
    (4×4, stride 2), then 4c→1 (3×3). H and W must be multiples of 8 (training patches are).
    """

    def __init__(self, channels: int = 32) -> None:
        super().__init__()
        c = channels
        shapes = [(3, c, 3, 1), (c, 2 * c, 4, 2), (2 * c, 4 * c, 4, 2), (4 * c, 4 * c, 4, 2), (4 * c, 1, 3, 1)]
        self.convs = nn.ModuleList(spectral_norm(nn.Conv2d(cin, cout, k, stride, padding=(k - 1) // 2 if stride == 1
                                                           else 1)) for cin, cout, k, stride in shapes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image * 2 - 1
        for conv in self.convs[:-1]:
            x = F.leaky_relu(conv(x), 0.2)
        return self.convs[-1](x)


class Adversary:
    """D, its optimizer and both losses; a :class:`~binsr.training.tasks.Critic`. ``generator_loss(fake, real)``
    is the student's term (D fixed for it) and remembers the batch; ``update()``, which the engine calls after
    the student's step, trains D once on it. ``state_dict``/``load_state_dict`` carry D and its optimizer
    through checkpoints."""

    def __init__(self, config: AdversaryConfig) -> None:
        self.config = config
        self.discriminator = PatchDiscriminator(config.channels)
        self.net: nn.Module = self.discriminator  # DistributedDataParallel-wrapped under torchrun
        self.optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=config.lr, betas=tuple(config.betas))
        self.batch: tuple[torch.Tensor, torch.Tensor] | None = None  # (real, detached fake) of the last loss

    def to(self, device: torch.device) -> Adversary:
        self.discriminator.to(device)
        return self

    def distribute(self) -> None:
        """Average D's gradients over processes (call once, in a torchrun process group)."""
        from torch.nn.parallel import DistributedDataParallel

        self.net = DistributedDataParallel(self.discriminator)

    def generator_loss(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """mean softplus(−D(fake)) (unweighted), differentiable in ``fake`` only: D is used as it stands, without
        a gradient for its weights or a power iteration. Remembers (real, fake) for :meth:`update`."""
        self.batch = (real.detach(), fake.detach())
        self.discriminator.requires_grad_(False).eval()
        try:
            return F.softplus(-self.discriminator(fake)).mean()
        finally:
            self.discriminator.requires_grad_(True).train()

    def update(self) -> float:
        """One Adam step of D on L_D of the batch of the last :meth:`generator_loss`; returns L_D."""
        if self.batch is None:
            raise RuntimeError("Adversary.update() before any generator_loss()")
        (real, fake), self.batch = self.batch, None
        logits = self.net(torch.cat([real, fake]))
        real_logits, fake_logits = logits.split([real.shape[0], fake.shape[0]])
        loss = F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def state_dict(self) -> dict[str, Any]:
        return {"discriminator": self.discriminator.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.discriminator.load_state_dict(state["discriminator"])
        self.optimizer.load_state_dict(state["optimizer"])
