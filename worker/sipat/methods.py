"""The training methods as named objectives of one loop (docs/training.md, "Methods").

Each method turns a batch (x, salience s, has_map, y) into a loss. All of them reach the
same PGD core (attacks.run_attack) with a different budget map or step mask.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attacks import eval_mode, fgsm_rs_attack, input_grad_scale, n_fgsm_attack, pgd_attack
from .checkpoint import load_model_from_checkpoint
from .config import METHODS, TrainConfig
from .data import ImageSet, keep_map_fraction
from .salience import binarise, grad_cam, part_budget_map, salience_map

_logger = logging.getLogger(__name__)

__all__ = [
    "METHODS",
    "build_method",
    "budget_scale",
    "sip_step_mask",
    "igd_loss",
    "true_logit_input_grad",
]


def budget_scale(cfg: TrainConfig, epoch: int, batch: int, n_batches: int) -> float:
    """Share of the training budget in force for batch `batch` (0-based) of epoch `epoch`.

    Linear epsilon warm-up: after b batches of training in all (this one included) the
    share is b / (eps_warmup_epochs * n_batches), capped at 1; 1 when the warm-up is off.
    It depends only on the position in training, so a resumed run uses the same values.
    """
    if cfg.eps_warmup_epochs <= 0:
        return 1.0
    done = epoch * n_batches + batch + 1
    return min(1.0, done / (cfg.eps_warmup_epochs * n_batches))


def sip_step_mask(s: Tensor, has_map: Tensor, threshold: float) -> Tensor:
    """SIP-AT's step mask m = 1 - binarise(s); images without a map get m = 1."""
    m = 1 - binarise(s, threshold)
    return torch.where(has_map.view(-1, 1, 1, 1), m, torch.ones_like(m))


def true_logit_input_grad(model: nn.Module, x: Tensor, y: Tensor, create_graph: bool) -> Tensor:
    """d logit_y / d x per image (signed, times input_grad_scale(model)); with create_graph
    the result is differentiable."""
    xg = x.detach().requires_grad_(True)
    logit = model(xg).gather(1, y.view(-1, 1)).sum()
    # up to input_grad_scale (1 except in fp16): IGD compares directions only
    (g,) = torch.autograd.grad(logit * input_grad_scale(model), xg, create_graph=create_graph)
    return g


def igd_loss(student: nn.Module, teacher: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """mean_i (1 - cos(g_S_i, g_T_i)) with the student's gradient differentiable (double backprop).

    The teacher is frozen: its gradient is computed without a graph. The student's gradient
    is computed in eval mode (running BatchNorm statistics are not updated by it).
    """
    with eval_mode(teacher):
        g_t = true_logit_input_grad(teacher, x, y, create_graph=False).detach()
    with eval_mode(student):
        g_s = true_logit_input_grad(student, x, y, create_graph=True)
    return (1 - F.cosine_similarity(g_s.flatten(1), g_t.flatten(1), dim=1, eps=1e-12)).mean()


class Method:
    """Base: standard training on clean images."""

    name = "standard"

    def __init__(self, cfg: TrainConfig, device: str):
        self.cfg = cfg
        self.device = device
        # set by the training loop before every batch (budget_scale); multiplies eps,
        # alpha and part_eps_low of every adversary, so the warm-up is the same for all
        self.scale = 1.0

    @property
    def eps(self) -> float:
        return self.scale * self.cfg.eps

    @property
    def alpha(self) -> float:
        return self.scale * self.cfg.alpha

    def prepare_train_set(self, train: ImageSet) -> ImageSet:
        """Hook to attach automatic maps or select the share of images with maps."""
        return train

    def record(self) -> dict[str, Any]:
        """What the run record must say about this method's settings."""
        return {"method": self.name}

    def loss(
        self,
        model: nn.Module,
        x: Tensor,
        s: Tensor,
        has_map: Tensor,
        y: Tensor,
        epoch: int,
        gen: torch.Generator,
    ) -> tuple[Tensor, Tensor]:
        """(loss, logits of the images the loss was computed on)."""
        logits = model(x)
        return F.cross_entropy(logits, y), logits


class PGDAT(Method):
    """Madry et al.: cross-entropy on PGD examples only, m = 1, eps everywhere."""

    name = "pgd_at"

    def adversarial(self, model, x, s, has_map, y, epoch, gen) -> Tensor:
        return pgd_attack(model, x, y, self.eps, self.alpha, self.cfg.steps, generator=gen)

    def loss(self, model, x, s, has_map, y, epoch, gen) -> tuple[Tensor, Tensor]:
        logits = model(self.adversarial(model, x, s, has_map, y, epoch, gen))
        return F.cross_entropy(logits, y), logits


class SIPAT(PGDAT):
    """Redgrave and Czajka: the adversary may not touch the salient pixels."""

    name = "sip_at"

    def prepare_train_set(self, train: ImageSet) -> ImageSet:
        c = self.cfg
        if c.mask_source != "human":
            train = attach_automatic_maps(train, c.auto_mask_model, c.mask_source, self.device)
        train = keep_map_fraction(train, c.mask_fraction, c.seed)
        _logger.info(
            "%s: %d of %d training images carry a map",
            self.name,
            int(train.has_map.sum()),
            len(train),
        )
        return train

    def record(self) -> dict[str, Any]:
        c = self.cfg
        return {
            "method": self.name,
            "mask_source": c.mask_source,
            "auto_mask_model": c.auto_mask_model,
            "mask_threshold": c.mask_threshold,
            "mask_fraction": c.mask_fraction,
        }

    def adversarial(self, model, x, s, has_map, y, epoch, gen) -> Tensor:
        c = self.cfg
        m = sip_step_mask(s, has_map, c.mask_threshold)
        return pgd_attack(model, x, y, self.eps, self.alpha, c.steps, step_mask=m, generator=gen)


class FastSIPAT(SIPAT):
    """SIP-AT with one masked single-step attack: N-FGSM (default) or FGSM-RS."""

    name = "fast_sip_at"

    def record(self) -> dict[str, Any]:
        c = self.cfg
        if c.fast_attack == "n_fgsm":
            step = {
                "n_fgsm_noise_ratio": c.n_fgsm_noise_ratio,
                "n_fgsm_alpha_ratio": c.n_fgsm_alpha_ratio,
            }
        else:
            step = {"fast_alpha_ratio": c.fast_alpha_ratio}
        return {**super().record(), "fast_attack": c.fast_attack, **step}

    def adversarial(self, model, x, s, has_map, y, epoch, gen) -> Tensor:
        c = self.cfg
        m = sip_step_mask(s, has_map, c.mask_threshold)
        if c.fast_attack == "n_fgsm":
            return n_fgsm_attack(
                model,
                x,
                y,
                self.eps,
                noise_ratio=c.n_fgsm_noise_ratio,
                alpha_ratio=c.n_fgsm_alpha_ratio,
                step_mask=m,
                generator=gen,
            )
        return fgsm_rs_attack(
            model, x, y, self.eps, alpha_ratio=c.fast_alpha_ratio, step_mask=m, generator=gen
        )


class PART(PGDAT):
    """Zhang et al. 2024: full budget where the CAM is high, eps_low elsewhere, after warm-up."""

    name = "part"

    def record(self) -> dict[str, Any]:
        c = self.cfg
        return {
            "method": self.name,
            "part_warmup_epochs": c.part_warmup_epochs,
            "part_eps_low": c.part_eps_low,
        }

    def adversarial(self, model, x, s, has_map, y, epoch, gen) -> Tensor:
        c = self.cfg
        if epoch < c.part_warmup_epochs:
            return super().adversarial(model, x, s, has_map, y, epoch, gen)
        low = self.scale * c.part_eps_low
        eps_map = part_budget_map(grad_cam(model, x), self.eps, low, x.shape[1])
        return pgd_attack(model, x, y, eps_map, self.alpha, c.steps, generator=gen)


class IGD(PGDAT):
    """Chen, Dong, Xie: PGD-AT + lambda * cosine distance to a frozen teacher's input gradient."""

    name = "igd"

    def __init__(self, cfg: TrainConfig, device: str):
        super().__init__(cfg, device)
        self.teacher = load_model_from_checkpoint(cfg.igd_teacher, device)
        # frozen, so its layout is free: with channels-last weights its gradient pass runs
        # channels-last (the input is converted inside the first convolution), 15-30 %
        # cheaper on CPU (the pooling kernels above all), same numbers to float rounding;
        # on CUDA every model is channels-last. It runs in the student's precision.
        self.teacher = self.teacher.to(memory_format=torch.channels_last)
        self.teacher.set_precision(cfg.precision)
        for p in self.teacher.parameters():
            p.requires_grad_(False)

    def record(self) -> dict[str, Any]:
        c = self.cfg
        return {
            "method": self.name,
            "igd_lambda": c.igd_lambda,
            "igd_teacher": c.igd_teacher,
            "igd_grad_point": c.igd_grad_point,
        }

    def loss(self, model, x, s, has_map, y, epoch, gen) -> tuple[Tensor, Tensor]:
        x_adv = self.adversarial(model, x, s, has_map, y, epoch, gen)
        logits = model(x_adv)
        point = x if self.cfg.igd_grad_point == "clean" else x_adv
        distil = igd_loss(model, self.teacher, point, y)
        return F.cross_entropy(logits, y) + self.cfg.igd_lambda * distil, logits


_REGISTRY: dict[str, type[Method]] = {
    "standard": Method,
    "pgd_at": PGDAT,
    "sip_at": SIPAT,
    "fast_sip_at": FastSIPAT,
    "part": PART,
    "igd": IGD,
}
assert set(_REGISTRY) == set(METHODS)


def build_method(cfg: TrainConfig, device: str = "cpu") -> Method:
    return _REGISTRY[cfg.method](cfg, device)


def attach_automatic_maps(
    train: ImageSet, model_path: str | None, kind: str, device: str, batch_size: int = 256
) -> ImageSet:
    """Replace the maps of every training image by `kind` salience from the named model.

    The target class is the true label. Maps are made once, on the un-augmented images,
    and then travel with their image through augmentation like human maps do. They are
    held in memory (one byte per pixel) on the stream path too.
    """
    model = load_model_from_checkpoint(model_path, device)
    maps = []
    for i in range(0, len(train), batch_size):
        idx = torch.arange(i, min(i + batch_size, len(train)))
        x, _, _, y = train.batch(idx, device)
        maps.append((salience_map(model, x, kind, y) * 255).round().to(torch.uint8).cpu())
    return train.with_maps(torch.cat(maps), torch.ones(len(train), dtype=torch.bool))
