"""Throughput of the final evaluation's attacks (`make bench`, the "eval" line).

A small PGD-AT model (small_cnn, salience benchmark 16 x 16, trained here in seconds) is
attacked on the same test images by PGD-20 (one restart) and by AutoAttack (standard, L-inf)
twice: through the product's `robustness.autoattack` and by calling the package directly as
its README shows. The three are timed in interleaved rounds by process CPU time and the
median round is reported; `autoattack_overhead` is the product's time over the package's
(goal <= 1.05: the wrapper adds nothing).

    python -m worker.sipat.bench_eval [--rounds 3] [--images 64]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from .benchmark_data import salience_benchmark
from .checkpoint import load_model_from_checkpoint
from .config import TrainConfig
from .evaluate import robust_accuracy
from .robustness import autoattack
from .train import train

EPS = 8 / 255


def quick_pgd_at_model(data, out: Path):
    """A small_cnn trained with PGD-AT at 8/255 for 6 epochs (seconds on a CPU); eval mode."""
    cfg = TrainConfig(
        method="pgd_at",
        epochs=6,
        eps_warmup_epochs=2,
        batch_size=32,
        lr=0.05,
        schedule="cosine",
        eps=EPS,
        alpha=3 / 255,
        steps=3,
        crop_padding=2,
        eval_eps=[EPS],
        eval_subset=32,
        eval_steps=2,
        epoch_eval_steps=2,
        autoattack_n=0,
        seed=0,
    )
    train(cfg, out, data=data, progress=False)
    return load_model_from_checkpoint(out / "final.pt").eval()


def _package_directly(model, x, y, n_classes: int) -> float:
    """AutoAttack as a user of the package writes it (target classes C - 1 below 10)."""
    from pyautoattack import AutoAttack

    aa = AutoAttack(model, norm="Linf", eps=EPS, version="standard", seed=0, device="cpu")
    aa.apgd_targeted.n_target_classes = aa.fab.n_target_classes = min(9, n_classes - 1)
    x_adv, _ = aa.run_standard_evaluation(x, y, batch_size=250)
    with torch.no_grad():
        return float((model(x_adv).argmax(1) == y).float().mean())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="evaluation attack throughput")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--images", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = salience_benchmark(n_train=400, n_test=args.images, image_size=16, region=8, seed=3)
    with tempfile.TemporaryDirectory() as tmp:
        model = quick_pgd_at_model(data, Path(tmp)).eval()
    test = data.test
    x, _, _, y = test.batch(torch.arange(len(test)))
    x = x.contiguous()

    timings: dict[str, list[float]] = {"pgd20": [], "product": [], "package": []}
    results: dict[str, float] = {}
    jobs = {
        "pgd20": lambda: robust_accuracy(model, test, EPS, steps=20, seed=0),
        "product": lambda: autoattack(model, test, EPS, data.num_classes, seed=0)["accuracy"],
        "package": lambda: _package_directly(model, x, y, data.num_classes),
    }
    for _ in range(args.rounds):
        for name, job in jobs.items():
            start = time.process_time()
            results[name] = job()
            timings[name].append(time.process_time() - start)
    med = {k: statistics.median(v) for k, v in timings.items()}
    line = {
        "bench": "eval",
        "pgd20_images_per_s": round(len(test) / med["pgd20"], 1),
        "autoattack_images_per_s": round(len(test) / med["product"], 2),
        "autoattack_overhead": round(med["product"] / med["package"], 3),
        "images": len(test),
        "eps": "8/255",
        "rounds": args.rounds,
        "pgd20_accuracy": results["pgd20"],
        "autoattack_accuracy": results["product"],
        "package_accuracy": results["package"],
        "seconds_per_round": {k: round(v, 2) for k, v in med.items()},
        "goal": "autoattack_overhead <= 1.05",
    }
    print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
