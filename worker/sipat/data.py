"""Datasets as in-memory tensors: image, salience map (or none), label.

Sources: the app's export (a directory with manifest.json, format sipat-dataset/1, see
docs/training.md) or a plain ImageFolder tree. Images are stored as uint8 and turned
into floats in [0, 1] per batch. A map travels with its image through every augmentation.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

_logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


def spread_indices(labels: Tensor, n: int) -> Tensor:
    """Sorted indices of n of these labels spread over the classes in proportion to their
    counts, from a fixed shuffle (seed 0): the same n for the same labels, and the picks for
    n are a subset of those for any larger n.

    Not the first n: test sets often come sorted by class (an ImageFolder tree, an export
    with its split), and the first n would then hold only the first classes.
    """
    if n <= 0 or n >= len(labels):
        return torch.arange(len(labels))
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    shuffled = labels[order]
    position = torch.empty(len(labels), dtype=torch.float64)
    for c in shuffled.unique():
        where = (shuffled == c).nonzero().flatten()
        # the k-th image of a class in the shuffled order sits at (k + 0.5) / count
        position[where] = (torch.arange(len(where), dtype=torch.float64) + 0.5) / len(where)
    return order[torch.argsort(position, stable=True)[:n]].sort().values


@dataclass
class TensorSet:
    """images uint8 N x C x H x W; maps uint8 N x 1 x H x W (0..255 = salience 0..1);
    has_map bool N (False = "no map"); labels int64 N."""

    images: Tensor
    maps: Tensor
    has_map: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, idx: Tensor) -> TensorSet:
        return TensorSet(self.images[idx], self.maps[idx], self.has_map[idx], self.labels[idx])

    def spread_subset(self, n: int) -> TensorSet:
        """n images spread over the classes in proportion to their counts, the same for every
        run on this set (a fixed seed, not the run's), so runs are compared on the same images.
        The whole set when n <= 0 or n >= len(self). See spread_indices.
        """
        if n <= 0 or n >= len(self):
            return self
        return self.subset(spread_indices(self.labels, n))

    def batch(
        self, idx: Tensor, device: str | torch.device = "cpu"
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Float images in [0, 1], float maps in [0, 1], has_map, labels for indices idx."""
        x = self.images[idx].to(device).float().div_(255)
        s = self.maps[idx].to(device).float().div_(255)
        return x, s, self.has_map[idx].to(device), self.labels[idx].to(device)


@dataclass
class DataBundle:
    train: TensorSet
    test: TensorSet
    classes: list[str]
    source: dict = field(default_factory=dict)  # what the data is (for the run record)

    @property
    def in_channels(self) -> int:
        return int(self.train.images.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.train.images.shape[-1])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def channel_stats(self) -> tuple[list[float], list[float]]:
        """Per-channel mean and std of the training images in [0, 1]."""
        x = self.train.images.float().div(255)
        mean = x.mean((0, 2, 3))
        std = x.std((0, 2, 3)).clamp_min(1e-3)
        return mean.tolist(), std.tolist()


def augment(
    x: Tensor, s: Tensor, padding: int, hflip: bool, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Random crop with zero padding and random horizontal flip, the same for x and s.

    x: B x C x H x W, s: B x 1 x H x W. The image and its map are concatenated and cut
    by one index, so they cannot drift apart.
    """
    b, c, h, w = x.shape
    both = torch.cat([x, s], 1)
    if padding > 0:
        both = F.pad(both, (padding,) * 4)
        oy = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
        ox = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
        rows = (oy.view(b, 1) + torch.arange(h).view(1, h)).to(x.device)  # B x H
        cols = (ox.view(b, 1) + torch.arange(w).view(1, w)).to(x.device)  # B x W
        bi = torch.arange(b, device=x.device).view(b, 1, 1)
        both = both.permute(0, 2, 3, 1)[bi, rows.view(b, h, 1), cols.view(b, 1, w)].permute(
            0, 3, 1, 2
        )
    if hflip:
        flip = (torch.rand(b, generator=generator) < 0.5).to(x.device)
        both = torch.where(flip.view(b, 1, 1, 1), both.flip(3), both)
    both = both.contiguous()
    return both[:, :c], both[:, c:]


def iterate_batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[Tensor]:
    """Shuffled index batches (the last may be smaller) from the data-order generator."""
    order = torch.randperm(n, generator=generator)
    for i in range(0, n, batch_size):
        yield order[i : i + batch_size]


def keep_map_fraction(ts: TensorSet, fraction: float, seed: int) -> TensorSet:
    """Keep maps on a seeded `fraction` of the images that have one; the rest get "no map"."""
    if fraction >= 1.0:
        return ts
    g = torch.Generator().manual_seed(seed + 7919)
    idx = torch.nonzero(ts.has_map).flatten()
    keep = idx[torch.randperm(len(idx), generator=g)[: int(round(fraction * len(idx)))]]
    has = torch.zeros_like(ts.has_map)
    has[keep] = True
    return TensorSet(ts.images, ts.maps, has, ts.labels)


def _load_image(path: Path, size: int | None, mode: str) -> np.ndarray:
    img = Image.open(path)
    img = img.convert(mode)
    if size is not None and img.size != (size, size):
        img = img.resize((size, size), Image.BILINEAR)
    a = np.asarray(img, dtype=np.uint8)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def _image_mode(paths: list[Path]) -> str:
    """'L' if every image is single-channel, else 'RGB'."""
    for p in paths:
        with Image.open(p) as im:
            if im.mode not in ("L", "1", "I;16", "I"):
                return "RGB"
    return "L"


def _stack(arrays: list[np.ndarray], what: str) -> Tensor:
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ValueError(
            f"{what} differ in size ({sorted(shapes)[:3]}...); set image_size to resize"
        )
    return (
        torch.from_numpy(np.stack(arrays)) if arrays else torch.zeros(0, 1, 1, 1, dtype=torch.uint8)
    )


def _split(n: int, test_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g)
    n_test = max(1, int(round(test_fraction * n)))
    return perm[n_test:].sort().values, perm[:n_test].sort().values


def load_export(
    root: Path, image_size: int | None = None, test_fraction: float = 0.2, seed: int = 0
) -> DataBundle:
    """The app's export: manifest.json (format sipat-dataset/1), images/, masks/."""
    manifest = json.loads((root / "manifest.json").read_text())
    if manifest.get("format") != "sipat-dataset/1":
        raise ValueError(f"{root}/manifest.json: unsupported format {manifest.get('format')!r}")
    entries = manifest["images"]
    paths = [root / e["file"] for e in entries]
    mode = _image_mode(paths)
    images, maps, has = [], [], []
    for e, p in zip(entries, paths, strict=True):
        img = _load_image(p, image_size, mode)
        images.append(img)
        if e.get("mask"):
            m = _load_image(
                root / e["mask"], img.shape[-1] if image_size is None else image_size, "L"
            )
            if m.shape[-2:] != img.shape[-2:]:
                raise ValueError(f"mask {e['mask']} does not match the size of {e['file']}")
            maps.append(m)
            has.append(True)
        else:
            maps.append(np.zeros((1, *img.shape[-2:]), dtype=np.uint8))
            has.append(False)
    ts = TensorSet(
        _stack(images, "images"),
        _stack(maps, "masks"),
        torch.tensor(has, dtype=torch.bool),
        torch.tensor([int(e["label"]) for e in entries], dtype=torch.long),
    )
    splits = [e.get("split") for e in entries]
    if any(s == "test" for s in splits) and any(s == "train" for s in splits):
        tr = torch.tensor([i for i, s in enumerate(splits) if s != "test"])
        te = torch.tensor([i for i, s in enumerate(splits) if s == "test"])
    else:
        tr, te = _split(len(entries), test_fraction, seed)
    source = {
        "kind": "export",
        "dataset": manifest.get("dataset"),
        "mask_set": manifest.get("mask_set"),
    }
    return DataBundle(ts.subset(tr), ts.subset(te), list(manifest["classes"]), source)


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir())


def _read_folder(root: Path, classes: list[str], size: int | None, mode: str) -> tuple[list, list]:
    images, labels = [], []
    for label, name in enumerate(classes):
        d = root / name
        if not d.is_dir():
            continue
        for p in sorted(d.iterdir()):
            if p.suffix.lower() in IMAGE_SUFFIXES:
                images.append(_load_image(p, size, mode))
                labels.append(label)
    return images, labels


def load_image_folder(
    root: Path, image_size: int | None = None, test_fraction: float = 0.2, seed: int = 0
) -> DataBundle:
    """root/class_x/*.png, or root/train/class_x and root/test/class_x. No masks."""
    has_split = (root / "train").is_dir() and (root / "test").is_dir()
    class_root = root / "train" if has_split else root
    classes = [p.name for p in _class_dirs(class_root)]
    all_files = [
        p for c in classes for p in (class_root / c).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
    ]
    mode = _image_mode(all_files)

    def to_set(images: list, labels: list) -> TensorSet:
        x = _stack(images, "images")
        n = len(labels)
        maps = torch.zeros(n, 1, *x.shape[-2:], dtype=torch.uint8)
        return TensorSet(
            x, maps, torch.zeros(n, dtype=torch.bool), torch.tensor(labels, dtype=torch.long)
        )

    source = {"kind": "image_folder", "root": str(root)}
    if has_split:
        train = to_set(*_read_folder(root / "train", classes, image_size, mode))
        test = to_set(*_read_folder(root / "test", classes, image_size, mode))
        return DataBundle(train, test, classes, source)
    ts = to_set(*_read_folder(root, classes, image_size, mode))
    tr, te = _split(len(ts), test_fraction, seed)
    return DataBundle(ts.subset(tr), ts.subset(te), classes, source)


def load_data(
    data_dir: str | Path, image_size: int | None = None, test_fraction: float = 0.2, seed: int = 0
) -> DataBundle:
    """An export directory (has manifest.json) or an ImageFolder tree."""
    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"data directory not found: {root}")
    if (root / "manifest.json").is_file():
        return load_export(root, image_size, test_fraction, seed)
    return load_image_folder(root, image_size, test_fraction, seed)
