"""Throughput of every method's training step (`make bench`), on CPU and, when there is
one, on the GPU.

Same model, data (salience benchmark, RGB), batch and K for all methods of one
configuration. Methods are timed in interleaved rounds (so a busy machine slows all of them
alike) and the median round is reported. One JSON object per line, one per method, each
naming its device, precision, model, image size and batch; the pgd_at line also carries
`floor_ratio`: its step time over the compute floor (K input-gradient passes plus one
training pass, timed separately in the same run). A last line per configuration times a
PGD-AT loop built on torchattacks.PGD, in the same precision.

- CPU (always): small_cnn at 32 px, batch 64, fp32. images_per_s and the ratios use this
  process's CPU time (time.process_time), which a shared machine's other load does not
  inflate; the wall-clock figure is wall_images_per_s.
- CUDA (when present, or --gpu-only): PreAct ResNet-18 at 32 px (batch 512) and ResNet-50
  at 224 px (batch 128), each in fp32 and bf16, channels-last, cudnn.benchmark; wall clock
  with the device synchronised. bf16 lines carry `bf16_speedup` (fp32 PGD-AT time over bf16).

    python -m worker.sipat.bench [--rounds 9] [--batches 3] [--batch-size 64] [--steps 10]
                                 [--gpu-only] [--gpu-rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from .attacks import eval_mode
from .benchmark_data import salience_benchmark
from .checkpoint import save_atomic
from .config import METHODS, TrainConfig
from .device import StepScaler, configure_backends, prepare_model
from .methods import build_method
from .models import build_model
from .runtime import tune_cpu_allocator

# (model, image size, batch) of the GPU lines: the AT literature's CIFAR network and an
# ImageNet-size one
GPU_CONFIGS = (("preact_resnet18", 32, 512), ("resnet50", 224, 128))


def bench_methods(
    model_name: str,
    image_size: int,
    batch_size: int,
    *,
    batches: int,
    rounds: int,
    steps: int,
    device: str = "cpu",
    precision: str = "fp32",
) -> list[dict]:
    """One configuration: a line per method and one for the torchattacks loop."""
    cuda = torch.device(device).type == "cuda"
    torch.manual_seed(0)
    b, k = batch_size, steps
    data = salience_benchmark(
        n_train=b * batches, n_test=8, image_size=image_size, region=image_size // 3, seed=0
    )
    batch_list = [
        data.train.batch(torch.arange(i * b, (i + 1) * b), device) for i in range(batches)
    ]
    model = prepare_model(
        build_model(model_name, data.num_classes, 3, image_size), device, precision
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    scaler = StepScaler(device, precision)
    with tempfile.TemporaryDirectory() as tmp:
        teacher = Path(tmp) / "teacher.pt"
        spec = {
            "name": model_name,
            "num_classes": data.num_classes,
            "in_channels": 3,
            "image_size": image_size,
            "mean": [0.5] * 3,
            "std": [0.25] * 3,
        }
        net = build_model(model_name, data.num_classes, 3, image_size)
        save_atomic({"model_spec": spec, "model": net.state_dict()}, teacher)
        common = {
            "steps": k,
            "eps": 8 / 255,
            "alpha": 2 / 255,
            "part_warmup_epochs": 0,
            "igd_teacher": str(teacher),
            "precision": precision,
            "device": device,
        }
        methods = {m: build_method(TrainConfig(method=m, **common), device) for m in METHODS}
    gen = torch.Generator(device=device).manual_seed(0)

    def run_method(name):
        model.train()
        for x, s, has, y in batch_list:
            loss, _ = methods[name].loss(model, x, s, has, y, 1, gen)
            scaler.step(loss, opt)

    def run_floor_grad():  # K input-gradient passes, eval mode, no weight gradients
        with eval_mode(model):  # the same eval-mode model the attacks use
            for x, _, _, y in batch_list:
                for _ in range(k):
                    xg = x.detach().requires_grad_(True)
                    torch.autograd.grad(F.cross_entropy(model(xg), y, reduction="sum"), xg)

    def run_floor_train():  # one training pass
        model.train()
        for x, _, _, y in batch_list:
            scaler.step(F.cross_entropy(model(x), y), opt)

    import torchattacks

    def run_torchattacks():
        atk = torchattacks.PGD(model, eps=8 / 255, alpha=2 / 255, steps=k, random_start=True)
        model.train()
        for x, _, _, y in batch_list:
            x_adv = atk(x, y)  # torchattacks sets eval mode during the attack and restores it
            scaler.step(F.cross_entropy(model(x_adv), y), opt)

    jobs = {
        **{m: (lambda m=m: run_method(m)) for m in METHODS},
        "floor_grad": run_floor_grad,
        "floor_train": run_floor_train,
        "pgd_at_torchattacks": run_torchattacks,
    }

    def sync():
        if cuda:
            torch.cuda.synchronize()

    for fn in jobs.values():  # warm-up (and cudnn.benchmark's search)
        fn()
    sync()
    wall: dict[str, list[float]] = {name: [] for name in jobs}
    cpu: dict[str, list[float]] = {name: [] for name in jobs}
    for _ in range(rounds):
        for name, fn in jobs.items():
            w0, c0 = time.perf_counter(), time.process_time()
            fn()
            sync()
            cpu[name].append(time.process_time() - c0)
            wall[name].append(time.perf_counter() - w0)
    # On CPU, ratios use CPU time of this process: on a shared machine wall time also counts
    # other tenants' load, CPU time does not. On a GPU the wall clock is what counts.
    med_wall = {name: statistics.median(v) for name, v in wall.items()}
    med = med_wall if cuda else {name: statistics.median(v) for name, v in cpu.items()}
    n_img = b * batches
    meta = {
        "model": model_name,
        "image_size": image_size,
        "batch_size": b,
        "steps": k,
        "rounds": rounds,
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "precision": precision,
        "clock": "wall" if cuda else "process_cpu",
    }
    lines = []
    for name in (*METHODS, "pgd_at_torchattacks"):
        line = {
            "method": name,
            "images_per_s": round(n_img / med[name], 2),
            "ratio_to_pgd_at": round(med[name] / med["pgd_at"], 3),
            "wall_images_per_s": round(n_img / med_wall[name], 2),
            **meta,
        }
        if name == "pgd_at":
            floor = med["floor_grad"] + med["floor_train"]
            line["floor_ratio"] = round(med["pgd_at"] / floor, 3)
            line["floor_images_per_s"] = round(n_img / floor, 2)
        if name == "fast_sip_at":
            line["ratio_to_sip_at"] = round(med[name] / med["sip_at"], 3)
        if name == "pgd_at_torchattacks":
            line["torchattacks_pgd_images_per_s"] = line["images_per_s"]
            line["ours_over_torchattacks"] = round(med[name] / med["pgd_at"], 3)
        lines.append(line)
    return lines


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
    p.add_argument("--gpu-only", action="store_true", help="only the CUDA configurations")
    p.add_argument("--gpu-rounds", type=int, default=3)
    p.add_argument("--gpu-batches", type=int, default=2)
    args = p.parse_args(argv)
    if not args.gpu_only:
        torch.set_num_threads(args.threads)
        tuned = tune_cpu_allocator()  # as train() does, so the bench times what a run does
        for line in bench_methods(
            "small_cnn",
            args.image_size,
            args.batch_size,
            batches=args.batches,
            rounds=args.rounds,
            steps=args.steps,
        ):
            print(json.dumps({**line, "threads": args.threads, "malloc_tuned": tuned}), flush=True)
    if not torch.cuda.is_available():
        if args.gpu_only:
            print("error: --gpu-only needs a CUDA device; none is visible", file=sys.stderr)
            return 2
        return 0
    configure_backends("cuda", deterministic=False)
    for model_name, size, batch in GPU_CONFIGS:
        fp32_pgd_at = None
        for precision in ("fp32", "bf16"):
            lines = bench_methods(
                model_name,
                size,
                batch,
                batches=args.gpu_batches,
                rounds=args.gpu_rounds,
                steps=args.steps,
                device="cuda",
                precision=precision,
            )
            pgd_at = next(x for x in lines if x["method"] == "pgd_at")["images_per_s"]
            for line in lines:
                if precision == "bf16" and fp32_pgd_at:
                    line["bf16_speedup"] = round(pgd_at / fp32_pgd_at, 3)
                print(json.dumps(line), flush=True)
            fp32_pgd_at = fp32_pgd_at or pgd_at
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
