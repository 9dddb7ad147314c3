"""Stimuli for perception studies: an image attacked by a model with L-inf PGD, quantised to
8 bits within its budget, and a lossless PNG that is the same for the same pixels.

Arrays in, arrays and bytes out: no study, database or storage here (the app's adapter is
worker/study_tasks.py; docs/studies.md says what the stimuli are).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image as PILImage

from .attacks import eval_mode, pgd_attack


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


def quantise_batch(x_adv: torch.Tensor, src: torch.Tensor, eps_255: float) -> torch.Tensor:
    """`quantise` for a batch: attacked images in [0, 1] and their uint8 sources (both
    B x C x H x W) -> the 8-bit images within floor(eps_255) grey levels, back in [0, 1]."""
    budget = int(np.floor(eps_255 + 1e-6))
    s = src.to(torch.int32)
    q = torch.round(x_adv * 255).to(torch.int32)
    q = torch.minimum(torch.maximum(q, (s - budget).clamp(min=0)), (s + budget).clamp(max=255))
    return q.to(torch.float32).div(255)


@torch.no_grad()
def _correct(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    with eval_mode(model):
        return model(x).argmax(1) == y


def robust_accuracy_at(
    model: torch.nn.Module,
    images: np.ndarray,
    labels: Sequence[int],
    eps_255: Sequence[float],
    *,
    steps: int,
    alpha_ratio: float,
    restarts: int,
    seed: int,
    device: str = "cpu",
    batch_size: int = 256,
) -> list[dict[str, float]]:
    """The model's robust accuracy on `images` (N x C x H x W uint8) at each epsilon of
    `eps_255` (grey levels), as the stimuli are made: L-inf PGD with `steps` iterations,
    step alpha_ratio x eps, `restarts` random starts (seeded), each result quantised to
    8 bits within its budget (what a screen shows; `quantise_batch`).

    An image is robust at an epsilon when it is classified correctly clean and after every
    restart at that epsilon and at every smaller one: an adversarial image found within a
    smaller budget also lies within the larger, so the curve is the worst case over them and
    never rises with epsilon. Returns, per epsilon ascending, {"epsilon_255", "accuracy" in
    [0, 1], "n_robust", "n"}."""
    n = len(images)
    if n == 0:
        raise ValueError("no images to measure the model's accuracy on")
    src = torch.as_tensor(np.ascontiguousarray(images), dtype=torch.uint8)
    y_all = torch.as_tensor(list(labels), dtype=torch.long)
    gen = torch.Generator(device=device).manual_seed(seed)
    robust = torch.zeros(n, dtype=torch.bool)
    for start in range(0, n, batch_size):
        idx = slice(start, min(start + batch_size, n))
        x = src[idx].to(device).float().div(255)
        robust[idx] = _correct(model, x, y_all[idx].to(device)).cpu()
    points = []
    for e in sorted({float(v) for v in eps_255}):
        if e > 0:
            eps = e / 255
            for _ in range(restarts):
                live = torch.nonzero(robust).flatten()
                for start in range(0, len(live), batch_size):
                    idx = live[start : start + batch_size]
                    s = src[idx].to(device)
                    x = s.float().div(255)
                    y = y_all[idx].to(device)
                    x_adv = pgd_attack(model, x, y, eps, alpha_ratio * eps, steps, generator=gen)
                    ok = _correct(model, quantise_batch(x_adv, s, e), y).cpu()
                    robust[idx] &= ok
        k = int(robust.sum())
        points.append({"epsilon_255": e, "accuracy": k / n, "n_robust": k, "n": n})
    return points


def autoattack_accuracy_at(
    model: torch.nn.Module,
    images: np.ndarray,
    labels: Sequence[int],
    eps_255: Sequence[float],
    *,
    n_classes: int,
    seed: int,
    device: str = "cpu",
) -> dict[str, Any]:
    """The model's robust accuracy on `images` (N x C x H x W uint8) under the original
    AutoAttack (`robustness.autoattack`: the `pyautoattack` package, standard version, L-inf,
    the attack a run's final evaluation reports) at each epsilon of `eps_255` (grey levels).

    As in `robust_accuracy_at`, an image is robust at an epsilon only when it is classified
    correctly clean and no attack at that epsilon or a smaller one changed its answer, so each
    epsilon attacks only the images still robust at the one below (which also keeps the cost
    down). AutoAttack's own adversarial images are judged, unquantised, as the package and the
    run's evaluation judge them. Returns {"points": per epsilon ascending {"epsilon_255",
    "accuracy" in [0, 1], "n_robust", "n"}, "settings": the attack as the library reports
    it, "warnings": AutoAttack's, each with its epsilon}."""
    from .data import TensorSet
    from .robustness import (
        AA_ITERATIONS,
        AA_SQUARE_QUERIES,
        MIN_CLASSES_APGD_T,
        attacks_for,
        autoattack,
        package_version,
    )

    n = len(images)
    if n == 0:
        raise ValueError("no images to measure the model's accuracy on")
    src = torch.as_tensor(np.ascontiguousarray(images), dtype=torch.uint8)
    y = torch.as_tensor(list(labels), dtype=torch.long)
    robust = torch.zeros(n, dtype=torch.bool)
    for start in range(0, n, 256):
        idx = slice(start, min(start + 256, n))
        x = src[idx].to(device).float().div(255)
        robust[idx] = _correct(model, x, y[idx].to(device)).cpu()
    points: list[dict[str, Any]] = []
    warnings: list[str] = []
    for e in sorted({float(v) for v in eps_255}):
        live = torch.nonzero(robust).flatten()
        if e > 0 and len(live):
            h, w = src.shape[2:]
            ts = TensorSet(
                src[live],
                torch.zeros(len(live), 1, h, w, dtype=torch.uint8),
                torch.zeros(len(live), dtype=torch.bool),
                y[live],
            )
            report = autoattack(model, ts, e / 255, n_classes, seed=seed, device=device)
            robust[live] &= report["flags"].to(torch.bool)
            warnings += [f"at {e:g}/255: {text}" for text in report["warnings"]]
        k = int(robust.sum())
        points.append({"epsilon_255": e, "accuracy": k / n, "n_robust": k, "n": n})
    settings = {
        "attack": "AutoAttack",
        "version": "standard",
        "norm": "Linf",
        "package": package_version(),
        "attacks": attacks_for(n_classes),
        "iterations": AA_ITERATIONS,
        "target_classes": max(1, min(9, n_classes - 1)),
        "square_queries": AA_SQUARE_QUERIES,
        "quantised": False,
        "notes": []
        if n_classes >= MIN_CLASSES_APGD_T
        else [f"APGD-T was not run: it needs at least {MIN_CLASSES_APGD_T} classes"],
    }
    return {"points": points, "settings": settings, "warnings": warnings}


def encode_png(pixels: np.ndarray) -> bytes:
    """Lossless PNG of an H x W (grey) or H x W x 3 uint8 array; no metadata chunks, fixed
    settings, so equal pixels give equal bytes. Compressed, so its length depends on the
    pixels: the app stores and serves study stimuli uncompressed instead
    (backend.services.studies.stimuli.encode_stimulus), so that sizes say nothing."""
    mode = "L" if pixels.ndim == 2 else "RGB"
    buf = io.BytesIO()
    PILImage.fromarray(pixels, mode).save(buf, "PNG", compress_level=6)
    return buf.getvalue()
