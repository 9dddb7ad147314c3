"""Throughput of every method's training step on CPU (`make bench`).

Same model (small_cnn), data (salience benchmark, 32 x 32 RGB), batch and K for all.
Methods are timed in interleaved rounds (so a busy machine slows all of them alike) and
the median round is reported. images_per_s and the ratios use this process's CPU time
(time.process_time), which a shared machine's other load does not inflate; the
wall-clock figure is reported as wall_images_per_s. One JSON object per line, one per
method; the pgd_at line also carries `floor_ratio`: its step time over the compute floor
(K input-gradient passes plus one training pass, timed separately in the same run). A
last line times a PGD-AT loop built on torchattacks.PGD.

    python -m worker.sipat.bench [--rounds 9] [--batches 3] [--batch-size 64] [--steps 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from .attacks import eval_mode
from .benchmark_data import salience_benchmark
from .checkpoint import save_atomic
from .config import METHODS, TrainConfig
from .methods import build_method
from .models import build_model
from .runtime import tune_cpu_allocator


def _train_step(model, opt, loss):
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="training-step throughput per method")
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--batches", type=int, default=3, help="batches per timing")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=10, help="PGD steps K")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument(
        "--threads", type=int, default=1, help="1 keeps CPU time free of thread spinning"
    )
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    tuned = tune_cpu_allocator()  # as train() does, so the bench times what a run does
    torch.manual_seed(0)
    b, k = args.batch_size, args.steps
    data = salience_benchmark(
        n_train=b * args.batches,
        n_test=8,
        image_size=args.image_size,
        region=args.image_size // 3,
        seed=0,
    )
    batches = [data.train.batch(torch.arange(i * b, (i + 1) * b)) for i in range(args.batches)]
    model = build_model("small_cnn", data.num_classes, 3, args.image_size)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    tmp = Path(tempfile.mkdtemp())
    teacher = tmp / "teacher.pt"
    save_atomic(
        {
            "model_spec": {
                "name": "small_cnn",
                "num_classes": data.num_classes,
                "in_channels": 3,
                "image_size": args.image_size,
                "mean": [0.5] * 3,
                "std": [0.25] * 3,
            },
            "model": build_model("small_cnn", data.num_classes, 3, args.image_size).state_dict(),
        },
        teacher,
    )
    common = dict(
        steps=k, eps=8 / 255, alpha=2 / 255, part_warmup_epochs=0, igd_teacher=str(teacher)
    )
    methods = {m: build_method(TrainConfig(method=m, **common)) for m in METHODS}
    gen = torch.Generator().manual_seed(0)

    def run_method(name):
        model.train()
        for x, s, has, y in batches:
            loss, _ = methods[name].loss(model, x, s, has, y, 1, gen)
            _train_step(model, opt, loss)

    def run_floor_grad():  # K input-gradient passes, eval mode, no weight gradients
        with eval_mode(model):  # the same eval-mode model the attacks use
            for x, _, _, y in batches:
                for _ in range(k):
                    xg = x.detach().requires_grad_(True)
                    torch.autograd.grad(F.cross_entropy(model(xg), y, reduction="sum"), xg)

    def run_floor_train():  # one training pass
        model.train()
        for x, _, _, y in batches:
            _train_step(model, opt, F.cross_entropy(model(x), y))

    import torchattacks

    def run_torchattacks():
        atk = torchattacks.PGD(model, eps=8 / 255, alpha=2 / 255, steps=k, random_start=True)
        model.train()
        for x, _, _, y in batches:
            x_adv = atk(x, y)  # torchattacks sets eval mode during the attack and restores it
            _train_step(model, opt, F.cross_entropy(model(x_adv), y))

    jobs = {
        **{m: (lambda m=m: run_method(m)) for m in METHODS},
        "floor_grad": run_floor_grad,
        "floor_train": run_floor_train,
        "pgd_at_torchattacks": run_torchattacks,
    }
    for fn in jobs.values():  # warm-up
        fn()
    wall: dict[str, list[float]] = {name: [] for name in jobs}
    cpu: dict[str, list[float]] = {name: [] for name in jobs}
    for _ in range(args.rounds):
        for name, fn in jobs.items():
            w0, c0 = time.perf_counter(), time.process_time()
            fn()
            cpu[name].append(time.process_time() - c0)
            wall[name].append(time.perf_counter() - w0)
    # Ratios use CPU time of this process: on a shared machine wall time also counts other
    # tenants' load, CPU time does not. Wall-clock throughput is reported alongside.
    med = {name: statistics.median(v) for name, v in cpu.items()}
    med_wall = {name: statistics.median(v) for name, v in wall.items()}
    n_img = b * args.batches
    meta = {
        "model": "small_cnn",
        "image_size": args.image_size,
        "batch_size": b,
        "steps": k,
        "rounds": args.rounds,
        "threads": args.threads,
        "device": "cpu",
        "clock": "process_cpu",
        "malloc_tuned": tuned,
    }
    for name in (*METHODS, "pgd_at_torchattacks"):
        line = {
            "method": name,
            "images_per_s": round(n_img / med[name], 2),
            "ratio_to_pgd_at": round(med[name] / med["pgd_at"], 3),
            "wall_images_per_s": round(n_img / med_wall[name], 2),
            **meta,
        }
        if name == "pgd_at":
            line["floor_ratio"] = round(med["pgd_at"] / (med["floor_grad"] + med["floor_train"]), 3)
            line["floor_images_per_s"] = round(n_img / (med["floor_grad"] + med["floor_train"]), 2)
        if name == "fast_sip_at":
            line["ratio_to_sip_at"] = round(med[name] / med["sip_at"], 3)
        if name == "pgd_at_torchattacks":
            line["torchattacks_pgd_images_per_s"] = line["images_per_s"]
        print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
