"""Does the stream path keep up with training? (`make bench`, the loader line.)

Writes an export of JPEG photographs (foolbox's 20 ImageNet validation images, resized to
256 px and repeated) with binary PNG masks, then measures, one after the other on the same
machine:
- images_per_s: what the stream path delivers (StreamBatches: DataLoader workers decode
  image and mask, resize to 224 px, crop and flip them together; batches pinned and copied
  to the device), after one warm-up epoch;
- pgd_at_images_per_s: what a PGD-AT training step of ResNet-18 at 224 px consumes (K steps
  of the attack and one weight update, the batches taken from memory).
The goal is a `ratio` (loader over PGD-AT) of at least 2: the loader is never what a run
waits for. Both are wall-clock rates (the loader's work happens in other processes).

    python -m worker.sipat.bench_loader [--images 256] [--workers N] [--device cuda]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .attacks import pgd_attack
from .data import StreamBatches, load_data
from .device import StepScaler, prepare_model
from .models import build_model
from .runtime import tune_cpu_allocator

SOURCE_SIZE = 256  # pixels per side of the files; the loader resizes them to --image-size


def _photographs() -> tuple[list[np.ndarray], str]:
    """foolbox's ImageNet samples (shipped with the package, read without importing it: its
    imports need more than the files do), or smooth synthetic images; and which."""
    spec = importlib.util.find_spec("foolbox")
    folder = Path(spec.origin).parent / "data" if spec and spec.origin else None
    files = sorted(folder.glob("imagenet_*")) if folder and folder.is_dir() else []
    if files:
        return [np.asarray(Image.open(p).convert("RGB")) for p in files], "foolbox imagenet samples"
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:SOURCE_SIZE, 0:SOURCE_SIZE] / SOURCE_SIZE
    synthetic = [
        (255 * np.stack([np.sin(6 * xx * f), np.cos(5 * yy * f), xx * yy], -1) % 255).astype(
            np.uint8
        )
        for f in rng.uniform(0.5, 3, size=20)
    ]
    return synthetic, "synthetic"


def write_export(root: Path, n: int, classes: int = 10) -> tuple[Path, str]:
    """n JPEG images (quality 90, SOURCE_SIZE px) with PNG masks, as the app exports them;
    and where the pictures came from."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    photos, source = _photographs()
    entries = []
    for i in range(n):
        img = Image.fromarray(photos[i % len(photos)]).resize((SOURCE_SIZE, SOURCE_SIZE))
        if i >= len(photos):  # not byte-identical copies: flip and shift some
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if i % 2 else img
            img = img.rotate(i % 7, translate=(i % 5, i % 3))
        img.save(root / "images" / f"{i}.jpg", quality=90)
        yy, xx = np.mgrid[0:SOURCE_SIZE, 0:SOURCE_SIZE]
        c = SOURCE_SIZE / 2 + (i % 9 - 4) * 8
        mask = (((yy - c) ** 2 + (xx - c) ** 2) < (SOURCE_SIZE / 4) ** 2).astype(np.uint8) * 255
        Image.fromarray(mask).save(root / "masks" / f"{i}.png")
        entries.append(
            {
                "file": f"images/{i}.jpg",
                "mask": f"masks/{i}.png",
                "label": i % classes,
                "split": "train",
            }
        )
    entries.append({**entries[0], "split": "test"})  # the loader needs a test split to exist
    manifest = {
        "format": "sipat-dataset/1",
        "dataset": {"name": "loader-bench"},
        "mask_set": None,
        "classes": [f"class{k}" for k in range(classes)],
        "images": entries,
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root, source


def loader_rate(
    data_dir: Path, image_size: int, batch_size: int, workers: int, device: str, epochs: int
) -> float:
    """Images per second the stream path delivers to `device`, median over epochs."""
    files = load_data(data_dir, image_size, loader="stream").train
    batches = StreamBatches(
        files,
        batch_size,
        augment=True,
        padding=16,
        hflip=True,
        seed=0,
        workers=workers,
        device=device,
    )
    gen = torch.Generator().manual_seed(0)
    rates = []
    for epoch in range(epochs + 1):  # epoch 0 warms the page cache and the workers
        t0 = time.perf_counter()
        n = 0
        for x, *_ in batches.epoch(epoch, gen):
            n += len(x)
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()
        if epoch:
            rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates)


def pgd_at_rate(
    image_size: int, batch_size: int, steps: int, rounds: int, device: str, precision: str
) -> float:
    """Images per second one PGD-AT step of ResNet-18 consumes (median over rounds)."""
    torch.manual_seed(0)
    model = prepare_model(build_model("resnet18", 10, 3, image_size), device, precision)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    scaler = StepScaler(device, precision)
    x = torch.rand(batch_size, 3, image_size, image_size, device=device)
    y = torch.randint(0, 10, (batch_size,), device=device)
    gen = torch.Generator(device=device).manual_seed(0)
    times = []
    for r in range(rounds + 1):  # round 0 warms up (cudnn.benchmark, allocator)
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        model.train()
        x_adv = pgd_attack(model, x, y, 8 / 255, 2 / 255, steps, generator=gen)
        scaler.step(torch.nn.functional.cross_entropy(model(x_adv), y), opt)
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()
        if r:
            times.append(time.perf_counter() - t0)
    return batch_size / statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="stream loader throughput against PGD-AT's need")
    p.add_argument("--images", type=int, default=256, help="files in the bench export")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=None, help="default 32 CPU, 128 CUDA")
    p.add_argument("--workers", type=int, default=None, help="default: the CPU count, max 16")
    p.add_argument("--steps", type=int, default=10, help="PGD steps K")
    p.add_argument("--epochs", type=int, default=3, help="timed loader epochs")
    p.add_argument("--rounds", type=int, default=2, help="timed PGD-AT steps")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--precision", default=None, help="default fp32 on CPU, bf16 on CUDA")
    args = p.parse_args(argv)
    cuda = torch.device(args.device).type == "cuda"
    batch = args.batch_size or (128 if cuda else 32)
    workers = args.workers if args.workers is not None else min(16, os.cpu_count() or 1)
    precision = args.precision or ("bf16" if cuda else "fp32")
    tune_cpu_allocator()
    if cuda:
        torch.backends.cudnn.benchmark = True
    with tempfile.TemporaryDirectory() as tmp:
        root, source = write_export(Path(tmp) / "export", args.images)
        delivered = loader_rate(root, args.image_size, batch, workers, args.device, args.epochs)
    consumed = pgd_at_rate(
        args.image_size, batch if cuda else 16, args.steps, args.rounds, args.device, precision
    )
    line = {
        "bench": "loader",
        "images_per_s": round(delivered, 1),
        "pgd_at_images_per_s": round(consumed, 2),
        "ratio": round(delivered / consumed, 1),
        "image_size": args.image_size,
        "source_size": SOURCE_SIZE,
        "files": "jpeg q90 + png mask",
        "pictures": source,
        "loader_workers": workers,
        "batch_size": batch,
        "model": "resnet18",
        "steps": args.steps,
        "device": args.device,
        "precision": precision,
        "clock": "wall",
        "cpus": os.cpu_count(),
    }
    print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
