"""Stimuli for perception studies: an image attacked by a model with L-inf PGD, quantised to
8 bits within its budget, and a lossless PNG that is the same for the same pixels.

Arrays in, arrays and bytes out: no study, database or storage here (the app's adapter is
worker/study_tasks.py; docs/studies.md says what the stimuli are).
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image as PILImage

from .attacks import pgd_attack


def to_chw(pixels: np.ndarray) -> np.ndarray:
    """H x W (grey) or H x W x C pixels as C x H x W, the model's layout."""
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def to_hwc(chw: np.ndarray) -> np.ndarray:
    """C x H x W pixels as H x W (one channel) or H x W x C, an image's layout."""
    return chw[0] if chw.shape[0] == 1 else chw.transpose(1, 2, 0)


def quantise(x_adv: torch.Tensor, src: np.ndarray, eps_255: float) -> np.ndarray:
    """An attacked image in [0, 1] (C x H x W) rounded to 8 bits and clipped so that every
    pixel stays within floor(eps_255) grey levels of the source (C x H x W uint8)."""
    q = torch.round(x_adv * 255).to(torch.int32).numpy()
    budget = int(np.floor(eps_255 + 1e-6))
    s = src.astype(np.int32)
    return np.clip(q, np.maximum(s - budget, 0), np.minimum(s + budget, 255)).astype(np.uint8)


def attack_and_quantise(
    model: torch.nn.Module,
    src: np.ndarray,
    label: int,
    eps_255: float,
    *,
    steps: int,
    alpha_ratio: float,
    random_start: bool = True,
    seed: int,
) -> np.ndarray:
    """PGD L-inf at eps_255/255 around src (C x H x W uint8; step alpha_ratio x eps, its
    random start drawn from `seed`), quantised by `quantise`. Epsilon 0 is the source."""
    if eps_255 <= 0:
        return src.copy()
    eps = eps_255 / 255
    x = torch.tensor(src, dtype=torch.float32).div(255).unsqueeze(0)
    y = torch.tensor([label])
    gen = torch.Generator().manual_seed(seed)
    x_adv = pgd_attack(
        model,
        x,
        y,
        eps,
        alpha_ratio * eps,
        steps,
        random_start=random_start,
        generator=gen,
    )
    return quantise(x_adv[0], src, eps_255)


def encode_png(pixels: np.ndarray) -> bytes:
    """Lossless PNG of an H x W (grey) or H x W x 3 uint8 array; no metadata chunks, fixed
    settings, so equal pixels give equal bytes. Compressed, so its length depends on the
    pixels: the app stores and serves study stimuli uncompressed instead
    (backend.services.studies.stimuli.encode_stimulus), so that sizes say nothing."""
    mode = "L" if pixels.ndim == 2 else "RGB"
    buf = io.BytesIO()
    PILImage.fromarray(pixels, mode).save(buf, "PNG", compress_level=6)
    return buf.getvalue()
