"""Datasets: image, salience map (or none), label; held in memory or streamed from storage.

Sources: the app's export (a directory with manifest.json, format sipat-dataset/1, see
docs/training.md) or a plain ImageFolder tree. Two paths with one interface:
- in memory (TensorSet): every image decoded once into uint8 tensors; batches are cut by
  index and augmented on the device (augment);
- streamed (FileSet): image and map files decoded per batch by DataLoader worker processes,
  which also crop and flip image and map together (StreamBatches), into pinned memory.
Images become floats in [0, 1] per batch. A map travels with its image through every
augmentation, on both paths.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
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

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """N x C x H x W of the images."""
        n, c, h, w = self.images.shape
        return int(n), int(c), int(h), int(w)

    def subset(self, idx: Tensor) -> TensorSet:
        return TensorSet(self.images[idx], self.maps[idx], self.has_map[idx], self.labels[idx])

    def with_maps(self, maps: Tensor | None, has_map: Tensor) -> TensorSet:
        """The same images and labels with other maps (None: keep them) and has_map."""
        return TensorSet(self.images, self.maps if maps is None else maps, has_map, self.labels)

    def load(self) -> TensorSet:
        return self

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
        return to_float_batch(
            self.images[idx], self.maps[idx], self.has_map[idx], self.labels[idx], device
        )


def to_float_batch(
    images: Tensor, maps: Tensor, has_map: Tensor, labels: Tensor, device: str | torch.device
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """uint8 images and maps to floats in [0, 1] on `device` (pinned, non-blocking on CUDA)."""
    from .device import to_device

    x = to_device(images, device).float().div_(255)
    s = to_device(maps, device).float().div_(255)
    return x, s, to_device(has_map, device), to_device(labels, device)


class FileSet:
    """The stream path's TensorSet: image (and map) files decoded when a batch needs them.

    paths / map_paths: one image file and one map file (or None) per image, read as `mode`
    (L or RGB) and resized to `size` (None: the files share their size); `maps`: maps made in
    memory (automatic salience) that replace the files' (uint8 N x 1 x H x W) or None.
    """

    def __init__(
        self,
        paths: Sequence[Path],
        map_paths: Sequence[Path | None],
        has_map: Tensor,
        labels: Tensor,
        mode: str,
        hw: tuple[int, int],
        size: int | None,
        maps: Tensor | None = None,
    ):
        self.paths = list(paths)
        self.map_paths = list(map_paths)
        self.has_map = has_map
        self.labels = labels
        self.mode = mode
        self.hw = hw
        self.size = size
        self.maps = maps

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return len(self), 1 if self.mode == "L" else 3, self.hw[0], self.hw[1]

    def subset(self, idx: Tensor) -> FileSet:
        picks = [int(i) for i in idx]
        return FileSet(
            [self.paths[i] for i in picks],
            [self.map_paths[i] for i in picks],
            self.has_map[idx],
            self.labels[idx],
            self.mode,
            self.hw,
            self.size,
            None if self.maps is None else self.maps[idx],
        )

    def spread_subset(self, n: int) -> FileSet:
        if n <= 0 or n >= len(self):
            return self
        return self.subset(spread_indices(self.labels, n))

    def with_maps(self, maps: Tensor | None, has_map: Tensor) -> FileSet:
        out = self.subset(torch.arange(len(self)))
        out.has_map = has_map
        if maps is not None:
            out.maps = maps
        return out

    def item(self, i: int) -> tuple[Tensor, Tensor]:
        """Image i as uint8 C x H x W and its map as uint8 1 x H x W (zeros: no map)."""
        img = _load_image(self.paths[i], self.size, self.mode)
        if img.shape[-2:] != self.hw:
            raise ValueError(
                f"{self.paths[i]} is {img.shape[-1]}x{img.shape[-2]}, not {self.hw[1]}x"
                f"{self.hw[0]} like the others; set image_size to resize"
            )
        if self.maps is not None:
            return torch.from_numpy(img), self.maps[i]
        mp = self.map_paths[i]
        if mp is None or not bool(self.has_map[i]):
            return torch.from_numpy(img), torch.zeros(1, *self.hw, dtype=torch.uint8)
        m = _load_image(mp, self.hw[-1] if self.size is None else self.size, "L")
        if m.shape[-2:] != self.hw:
            raise ValueError(f"mask {mp} does not match the size of {self.paths[i]}")
        return torch.from_numpy(img), torch.from_numpy(m)

    def _decode(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        with ThreadPoolExecutor(max_workers=4) as pool:  # PIL decodes without the GIL
            items = list(pool.map(self.item, [int(i) for i in idx]))
        if not items:
            return (
                torch.zeros(0, self.shape[1], *self.hw, dtype=torch.uint8),
                torch.zeros(0, 1, *self.hw, dtype=torch.uint8),
            )
        return torch.stack([a for a, _ in items]), torch.stack([m for _, m in items])

    def batch(
        self, idx: Tensor, device: str | torch.device = "cpu"
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """As TensorSet.batch, decoding the files (un-augmented: evaluation, map making)."""
        images, maps = self._decode(idx)
        return to_float_batch(images, maps, self.has_map[idx], self.labels[idx], device)

    def load(self) -> TensorSet:
        """Every image decoded into memory (for sets small enough, e.g. a spread subset)."""
        images, maps = self._decode(torch.arange(len(self)))
        return TensorSet(images, maps, self.has_map.clone(), self.labels.clone())


ImageSet = TensorSet | FileSet


def _augment_one(
    image: Tensor, mask: Tensor, padding: int, hflip: bool, rng: np.random.Generator
) -> tuple[Tensor, Tensor]:
    """augment() for one uint8 image and its map, with the sample's own random numbers."""
    c, h, w = image.shape
    both = torch.cat([image, mask], 0)
    if padding > 0:
        oy, ox = (int(v) for v in rng.integers(0, 2 * padding + 1, size=2))
        both = F.pad(both, (padding,) * 4)[:, oy : oy + h, ox : ox + w]
    if hflip and rng.random() < 0.5:
        both = both.flip(2)
    both = both.contiguous()
    return both[:c], both[c:]


class _StreamItems(torch.utils.data.Dataset):
    """DataLoader items of the stream path: key (epoch, index) -> augmented uint8 sample.

    The augmentation's random numbers come from (seed, epoch, index) alone, so a batch is
    the same whichever worker process decodes it and however many there are.
    """

    def __init__(self, files: FileSet, augment: bool, padding: int, hflip: bool, seed: int):
        self.files, self.augment = files, augment
        self.padding, self.hflip, self.seed = padding, hflip, seed

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: tuple[int, int]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        epoch, i = key
        image, mask = self.files.item(i)
        if self.augment:
            rng = np.random.default_rng([self.seed, epoch, i])
            image, mask = _augment_one(image, mask, self.padding, self.hflip, rng)
        return image, mask, self.files.has_map[i], self.files.labels[i]


class MemoryBatches:
    """The in-memory path's epochs: index batches cut from a TensorSet on the device, then
    cropped and flipped there (augment), all from the run's data-order generator."""

    def __init__(
        self,
        images: ImageSet,
        batch_size: int,
        *,
        augment: bool,
        padding: int,
        hflip: bool,
        device: str | torch.device,
    ):
        self.images, self.batch_size, self.device = images, batch_size, device
        self.augment, self.padding, self.hflip = augment, padding, hflip
        self.workers, self.why_fewer = 0, None

    def __len__(self) -> int:
        return len(self.images)

    def epoch(
        self,
        epoch: int,  # noqa: ARG002 - StreamBatches' signature; here the generator decides all
        generator: torch.Generator,
    ) -> Iterator[tuple[Tensor, Tensor, Tensor, Tensor]]:
        for idx in iterate_batches(len(self.images), self.batch_size, generator):
            x, s, has_map, y = self.images.batch(idx, self.device)
            if self.augment:
                x, s = augment(x, s, self.padding, self.hflip, generator)
            yield x, s, has_map, y


def _loader_worker_init(_: int) -> None:
    torch.set_num_threads(1)  # decoding is the work; one thread per process


def stream_workers(requested: int) -> tuple[int, str | None]:
    """DataLoader worker processes this process may start, and why fewer if so.

    A daemonic process (a Celery prefork pool child) may not have children: there the
    stream path decodes in the training process instead (run Celery with --pool solo).
    """
    if requested > 0 and multiprocessing.current_process().daemon:
        return 0, "this is a daemonic process (Celery prefork?): decoding in the process"
    return requested, None


class StreamBatches:
    """The stream path's epochs: DataLoader batches of (x, s, has_map, y) on the device.

    The batch order comes from the run's data-order generator exactly as in the in-memory
    path (iterate_batches); crops and flips happen in the workers (_StreamItems); batches are
    pinned, prefetched, and copied to the device without blocking.
    """

    def __init__(
        self,
        files: FileSet,
        batch_size: int,
        *,
        augment: bool,
        padding: int,
        hflip: bool,
        seed: int,
        workers: int,
        device: str | torch.device,
        prefetch: int = 4,
    ):
        self.items = _StreamItems(files, augment, padding, hflip, seed)
        self.batch_size, self.device, self.prefetch = batch_size, device, prefetch
        self.workers, self.why_fewer = stream_workers(workers)
        if self.why_fewer:
            _logger.warning("stream path: %s", self.why_fewer)

    def __len__(self) -> int:
        return len(self.items)

    def epoch(
        self, epoch: int, generator: torch.Generator
    ) -> Iterator[tuple[Tensor, Tensor, Tensor, Tensor]]:
        batches = [
            [(epoch, int(i)) for i in idx]
            for idx in iterate_batches(len(self.items), self.batch_size, generator)
        ]
        pin = torch.device(self.device).type == "cuda"
        loader = torch.utils.data.DataLoader(
            self.items,
            batch_sampler=batches,
            num_workers=self.workers,
            pin_memory=pin,
            prefetch_factor=self.prefetch if self.workers else None,
            worker_init_fn=_loader_worker_init if self.workers else None,
        )
        for images, maps, has_map, labels in loader:
            yield to_float_batch(images, maps, has_map, labels, self.device)


# channel statistics of a streamed training set come from this many images spread over it
STATS_SAMPLE = 2000


@dataclass
class DataBundle:
    train: ImageSet
    test: ImageSet
    classes: list[str]
    source: dict = field(default_factory=dict)  # what the data is (for the run record)

    @property
    def in_channels(self) -> int:
        return self.train.shape[1]

    @property
    def image_size(self) -> int:
        return self.train.shape[-1]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def streamed(self) -> bool:
        return isinstance(self.train, FileSet)

    def channel_stats(self) -> tuple[list[float], list[float]]:
        """Per-channel mean and std of the training images in [0, 1] (of STATS_SAMPLE of
        them spread over the classes when the set is streamed)."""
        train = self.train
        if isinstance(train, FileSet):
            train = train.spread_subset(STATS_SAMPLE).load()
        x = train.images.float().div(255)
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


def keep_map_fraction(ts: ImageSet, fraction: float, seed: int) -> ImageSet:
    """Keep maps on a seeded `fraction` of the images that have one; the rest get "no map"."""
    if fraction >= 1.0:
        return ts
    g = torch.Generator().manual_seed(seed + 7919)
    idx = torch.nonzero(ts.has_map).flatten()
    keep = idx[torch.randperm(len(idx), generator=g)[: int(round(fraction * len(idx)))]]
    has = torch.zeros_like(ts.has_map)
    has[keep] = True
    return ts.with_maps(None, has)


def _load_image(path: Path, size: int | None, mode: str) -> np.ndarray:
    img = Image.open(path)
    img = img.convert(mode)
    if size is not None and img.size != (size, size):
        img = img.resize((size, size), Image.BILINEAR)
    a = np.array(img, dtype=np.uint8)  # a writable copy (tensors are made from it)
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


@dataclass
class _Catalogue:
    """What a data directory holds, before anything is decoded: one entry per image."""

    paths: list[Path]
    map_paths: list[Path | None]
    labels: list[int]
    splits: list[str | None]  # "train", "test" or None (drawn by seed)
    classes: list[str]
    source: dict


def _read_catalogue_export(root: Path) -> _Catalogue:
    """The app's export: manifest.json (format sipat-dataset/1), images/, masks/."""
    manifest = json.loads((root / "manifest.json").read_text())
    if manifest.get("format") != "sipat-dataset/1":
        raise ValueError(f"{root}/manifest.json: unsupported format {manifest.get('format')!r}")
    entries = manifest["images"]
    source = {
        "kind": "export",
        "dataset": manifest.get("dataset"),
        "mask_set": manifest.get("mask_set"),
    }
    return _Catalogue(
        [root / e["file"] for e in entries],
        [root / e["mask"] if e.get("mask") else None for e in entries],
        [int(e["label"]) for e in entries],
        [e.get("split") for e in entries],
        list(manifest["classes"]),
        source,
    )


def _read_catalogue_folder(root: Path) -> _Catalogue:
    """root/class_x/*.png, or root/train/class_x with root/test/class_x (or root/val). No
    masks."""
    test_dir = next((root / d for d in ("test", "val") if (root / d).is_dir()), None)
    has_split = (root / "train").is_dir() and test_dir is not None
    class_root = root / "train" if has_split else root
    classes = [p.name for p in _class_dirs(class_root)]
    parts = [(root / "train", "train"), (test_dir, "test")] if has_split else [(root, None)]
    paths: list[Path] = []
    labels: list[int] = []
    splits: list[str | None] = []
    for folder, split in parts:
        assert folder is not None
        for label, name in enumerate(classes):
            d = folder / name
            if not d.is_dir():
                continue
            for f in sorted(d.iterdir()):
                if f.suffix.lower() in IMAGE_SUFFIXES:
                    paths.append(f)
                    labels.append(label)
                    splits.append(split)
    source = {"kind": "image_folder", "root": str(root)}
    return _Catalogue(paths, [None] * len(paths), labels, splits, classes, source)


def _split_indices(cat: _Catalogue, test_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """The data's own split when it has one (train and test both present), else by seed."""
    if any(s == "test" for s in cat.splits) and any(s == "train" for s in cat.splits):
        tr = torch.tensor([i for i, s in enumerate(cat.splits) if s != "test"], dtype=torch.long)
        te = torch.tensor([i for i, s in enumerate(cat.splits) if s == "test"], dtype=torch.long)
        return tr, te
    return _split(len(cat.paths), test_fraction, seed)


def _decoded_bytes(cat: _Catalogue, image_size: int | None, mode: str) -> int:
    """Bytes the decoded images would take in memory (from the file headers)."""
    channels = 1 if mode == "L" else 3
    if image_size is not None:
        return len(cat.paths) * channels * image_size**2
    total = 0
    for p in cat.paths:
        with Image.open(p) as im:
            total += channels * im.size[0] * im.size[1]
    return total


def _common_size(paths: list[Path], image_size: int | None) -> tuple[int, int]:
    """(H, W) every image has after resizing; refuses files of different sizes without it."""
    if image_size is not None:
        return image_size, image_size
    sizes = set()
    for p in paths:
        with Image.open(p) as im:
            sizes.add((im.size[1], im.size[0]))
    if len(sizes) > 1:
        shown = sorted(sizes)[:3]
        raise ValueError(f"images differ in size ({shown}...); set image_size to resize")
    return next(iter(sizes)) if sizes else (1, 1)


def _decode_catalogue(cat: _Catalogue, image_size: int | None, mode: str) -> TensorSet:
    images, maps, has = [], [], []
    for p, mp in zip(cat.paths, cat.map_paths, strict=True):
        img = _load_image(p, image_size, mode)
        images.append(img)
        if mp is not None:
            m = _load_image(mp, img.shape[-1] if image_size is None else image_size, "L")
            if m.shape[-2:] != img.shape[-2:]:
                raise ValueError(f"mask {mp} does not match the size of {p}")
            maps.append(m)
            has.append(True)
        else:
            maps.append(np.zeros((1, *img.shape[-2:]), dtype=np.uint8))
            has.append(False)
    return TensorSet(
        _stack(images, "images"),
        _stack(maps, "masks"),
        torch.tensor(has, dtype=torch.bool),
        torch.tensor(cat.labels, dtype=torch.long),
    )


def _bundle(
    cat: _Catalogue, image_size: int | None, test_fraction: float, seed: int, loader: str
) -> DataBundle:
    """Decode the catalogue into memory, or keep it on storage (loader: memory, stream or
    auto = stream above STREAM_ABOVE_BYTES of decoded images)."""
    from .config import STREAM_ABOVE_BYTES

    mode = _image_mode(cat.paths)
    if loader == "auto":
        big = _decoded_bytes(cat, image_size, mode) > STREAM_ABOVE_BYTES
        loader = "stream" if big else "memory"
    tr, te = _split_indices(cat, test_fraction, seed)
    if loader == "stream":
        files = FileSet(
            cat.paths,
            cat.map_paths,
            torch.tensor([m is not None for m in cat.map_paths], dtype=torch.bool),
            torch.tensor(cat.labels, dtype=torch.long),
            mode,
            _common_size(cat.paths, image_size),
            image_size,
        )
        train, test = files.subset(tr), files.subset(te)
    else:
        ts = _decode_catalogue(cat, image_size, mode)
        train, test = ts.subset(tr), ts.subset(te)
    return DataBundle(train, test, cat.classes, {**cat.source, "loader": loader})


def load_export(
    root: Path,
    image_size: int | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    loader: str = "memory",
) -> DataBundle:
    """The app's export: manifest.json (format sipat-dataset/1), images/, masks/."""
    return _bundle(_read_catalogue_export(root), image_size, test_fraction, seed, loader)


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir())


def load_image_folder(
    root: Path,
    image_size: int | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    loader: str = "memory",
) -> DataBundle:
    """root/class_x/*.png, or root/train/class_x and root/test/class_x (or val/). No masks."""
    return _bundle(_read_catalogue_folder(root), image_size, test_fraction, seed, loader)


def load_data(
    data_dir: str | Path,
    image_size: int | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    loader: str = "memory",
) -> DataBundle:
    """An export directory (has manifest.json) or an ImageFolder tree; `loader` is memory,
    stream or auto (see config.data_loader)."""
    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"data directory not found: {root}")
    if (root / "manifest.json").is_file():
        return load_export(root, image_size, test_fraction, seed, loader)
    return load_image_folder(root, image_size, test_fraction, seed, loader)
