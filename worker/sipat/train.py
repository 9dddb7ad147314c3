"""The training loop shared by every method: short, visible, resumable.

Per epoch: train loss and accuracy (on the images the loss saw), clean test accuracy, and
a cheap robust accuracy (PGD-config.epoch_eval_steps, one random start, at config.eps) on
config.eval_subset test images spread over the classes (the same images in every epoch and
every run on the data). After the last epoch, the full evaluation (evaluate_model: PGD with
restarts over the eps grid, AutoAttack, the gradient-masking checks). A checkpoint
is written atomically after each epoch; running again in the same out_dir resumes from
the last finished epoch and ends with the same metrics as an uninterrupted run.
"""

from __future__ import annotations

import json
import logging
import random
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from runconfig import cost

from . import device as accel
from . import distributed
from .checkpoint import load_checkpoint, save_atomic
from .config import ConfigError, TrainConfig, TrainingCancelled
from .data import DataBundle, FileSet, MemoryBatches, StreamBatches, load_data
from .evaluate import (
    OnProgress,
    clean_accuracy,
    evaluate_model,
    evaluation_settings,
    evaluation_stages,
    robust_accuracy,
)
from .methods import budget_scale, build_method
from .models import build_model
from .runtime import tune_cpu_allocator

_logger = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
FINAL = "final.pt"
METRICS = "metrics.json"

OnEpoch = Callable[[int, int, dict[str, Any]], None]
# on_batch(point): {step, epoch, batch, batches, loss, accuracy, images, images_per_s, device,
# memory_bytes, work}; see train()
OnBatch = Callable[[dict[str, Any]], None]
# on_batch's default pace: about this many points per epoch
BATCH_POINTS_PER_EPOCH = 20


def _memory_bytes(device: str) -> int | None:
    """Peak memory of the training: CUDA memory allocated on the device, else the process's
    peak resident set."""
    if accel.is_cuda(device):
        return int(torch.cuda.max_memory_allocated(torch.device(device)))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, KiB on Linux


def _write_json_atomic(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    tmp.replace(path)


def _schedule(cfg: TrainConfig, opt: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(opt, cfg.step_size, cfg.gamma)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.epochs)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)


def _batches(cfg: TrainConfig, train_set: Any, device: str) -> MemoryBatches | StreamBatches:
    """The training batches: cut from memory, or decoded by DataLoader workers (streamed)."""
    common = {
        "augment": cfg.augment,
        "padding": cfg.crop_padding,
        "hflip": cfg.hflip,
        "device": device,
    }
    if isinstance(train_set, FileSet):
        return StreamBatches(
            train_set, cfg.batch_size, seed=cfg.seed, workers=cfg.loader_workers, **common
        )
    return MemoryBatches(train_set, cfg.batch_size, **common)


def _evaluation(cfg: TrainConfig) -> dict[str, Any]:
    """The final evaluation a config asks for, as evaluate_model's arguments."""
    return {
        "eps_grid": cfg.eval_eps,
        "subset": cfg.eval_subset,
        "steps": cfg.eval_steps,
        "restarts": cfg.eval_restarts,
        "autoattack_eps": cfg.eps,
        "autoattack_n": cfg.autoattack_images(),
        "seed": cfg.seed,
    }


def _stage_args(cfg: TrainConfig) -> dict[str, Any]:
    """_evaluation's arguments that size the evaluation's stages."""
    ev = _evaluation(cfg)
    ev.pop("seed")
    return ev


def train(
    config: TrainConfig,
    out_dir: Path,
    *,
    data: DataBundle | None = None,
    on_epoch: OnEpoch | None = None,
    on_batch: OnBatch | None = None,
    batch_every: int | None = None,
    should_stop: Callable[[], bool] | None = None,
    progress: bool = True,
    on_evaluation: OnProgress | None = None,
) -> dict[str, Any]:
    """Train `config.method`, writing checkpoint.pt (each epoch), final.pt and metrics.json.

    data: a prebuilt DataBundle (otherwise loaded from config.data_dir).
    on_epoch(epoch, total_epochs, metrics): called after each finished epoch.
    on_batch(point): called every `batch_every` batches (None: about BATCH_POINTS_PER_EPOCH
    points per epoch) and after an epoch's last batch, with the mean loss and accuracy over
    the batches since the previous point, `step` (batches done since the run began, over all
    epochs), `batches` (per epoch), the images per second measured over those batches, and
    the device with its peak memory in bytes, and `work`: the run's work in the units of
    runconfig.cost (train_units in all and train_units_done so far, evaluation_units: the
    final evaluation's estimate, processes, units_per_s measured over the point's batches).
    on_evaluation(point): the final evaluation's progress (evaluate.EvaluationProgress).
    should_stop(): checked before every batch; if true, TrainingCancelled is raised and
    the epoch in progress is discarded (the last checkpoint stays).
    Returns the content of metrics.json.
    """
    cfg = config
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    # under torchrun: one rank of a DistributedDataParallel run (worker/sipat/distributed.py)
    dist = distributed.from_env(cfg.device)
    device = dist.device(cfg.device) if dist else cfg.device
    main = dist is None or dist.main
    if dist is not None and not main:
        on_epoch = on_batch = should_stop = None  # rank 0 reports and watches for a cancel
        progress = False
    tune_cpu_allocator()  # speed only (docs/training.md); a no-op without glibc
    backends = accel.configure_backends(device, cfg.deterministic)
    if data is None:
        if cfg.data_dir is None:
            raise ConfigError("data_dir", "is required when no data bundle is passed")
        data = load_data(cfg.data_dir, cfg.image_size, cfg.test_fraction, cfg.seed, cfg.data_loader)
    loader = "stream" if data.streamed else "memory"

    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    mean, std = data.channel_stats()
    spec = {
        "name": cfg.model,
        "num_classes": data.num_classes,
        "in_channels": data.in_channels,
        "image_size": data.image_size,
        "mean": mean,
        "std": std,
        "classes": data.classes,
    }
    model = accel.prepare_model(
        build_model(cfg.model, data.num_classes, data.in_channels, data.image_size, mean, std),
        device,
        cfg.precision,
    )
    method = build_method(cfg, device)
    train_set = method.prepare_train_set(data.train)
    batches = _batches(cfg, train_set, device)
    scaler = accel.StepScaler(device, cfg.precision)
    opt = torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )
    sched = _schedule(cfg, opt)
    data_gen = torch.Generator().manual_seed(cfg.seed)  # data order and augmentation
    # attack random starts (each rank its own stream: its shard is other images)
    attack_gen = torch.Generator(device=device).manual_seed(
        cfg.seed + 1 + (7919 * dist.rank if dist else 0)
    )
    history: list[dict[str, Any]] = []
    start_epoch = 0

    ckpt_path = out_dir / CHECKPOINT
    ck = load_checkpoint(ckpt_path, device) if main and ckpt_path.exists() else None
    if dist is not None:  # rank 0's checkpoint (its host may be the only one with it)
        ck = dist.broadcast(ck)
    if ck is not None:
        if ck["fingerprint"] != cfg.fingerprint():
            raise ConfigError("out_dir", f"{out_dir} holds a run with a different configuration")
        if ck.get("loader", "memory") != loader:
            raise ConfigError(
                "data_loader",
                f"{out_dir} was trained on the {ck.get('loader', 'memory')} data path; "
                f"resuming it on the {loader} path would change its augmentations",
            )
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        scaler.load_state_dict(ck.get("scaler"))
        data_gen.set_state(ck["rng"]["data"])
        attack_gen.set_state(ck["rng"]["attack"])
        torch.set_rng_state(ck["rng"]["torch"])
        np.random.set_state(ck["rng"]["numpy"])
        random.setstate(ck["rng"]["python"])
        accel.set_rng_state(ck["rng"], device)
        start_epoch, history = ck["epoch"], ck["history"]
        _logger.info("resuming %s from epoch %d of %d", out_dir, start_epoch, cfg.epochs)
        if main and dist is None and start_epoch >= cfg.epochs and (out_dir / METRICS).exists():
            done = json.loads((out_dir / METRICS).read_text())
            if done.get("final", {}).get("settings") == evaluation_settings(**_evaluation(cfg)):
                return done
            _logger.info("evaluating %s again: the evaluation settings changed", out_dir)

    attacked = data.test.spread_subset(cfg.eval_subset)  # the same images every epoch
    if attacked is not data.test and isinstance(attacked, FileSet):
        attacked = attacked.load()  # decoded once, attacked every epoch
    net, compile_fallback = model, None  # net: what trains (compiled or not); model: its weights
    if cfg.compile and start_epoch < cfg.epochs:
        x0, _, _, y0 = train_set.batch(torch.arange(min(len(train_set), cfg.batch_size)), device)
        net, compile_fallback = accel.compile_model(model, x0, y0, cfg.compile_backend)
    runtime = {
        **accel.describe(device, cfg.precision),
        **backends,
        "compile": cfg.compile,
        "compiled": net is not model,
        "loader": loader,
        "loader_workers": batches.workers,
    }
    if compile_fallback:
        runtime["compile_fallback"] = compile_fallback
    if dist is not None:
        net = dist.wrap(net, device, cfg.sync_batchnorm)
        runtime |= {
            "processes": dist.world,
            "distributed_backend": dist.backend,
            "sync_batchnorm": cfg.sync_batchnorm,
        }
    if batches.why_fewer:
        runtime["loader_note"] = batches.why_fewer
    n_batches = (len(train_set) + cfg.batch_size - 1) // cfg.batch_size
    every = batch_every or max(1, n_batches // BATCH_POINTS_PER_EPOCH)
    # the run's work (runconfig.cost), for the app's progress bar and its time left
    passes = cost.train_passes(cfg.method, cfg.steps)
    epoch_units = len(train_set) * passes + cost.epoch_check_units(
        len(data.test), len(attacked), cfg.epoch_eval_steps
    )

    def evaluation_units() -> float:
        survival = history[-1]["robust_accuracy"] if history else cost.DEFAULT_SURVIVAL
        stages = evaluation_stages(data, **_stage_args(cfg), survival=survival)
        return sum(s.units for s in stages)

    eval_units = evaluation_units()
    for epoch in range(start_epoch, cfg.epochs):
        net.train()
        loss_sum, correct, seen = 0.0, 0, 0
        # the figures since the last on_batch point
        point_loss, point_correct, point_seen, point_t0 = 0.0, 0, 0, time.perf_counter()
        bar = tqdm(
            batches.epoch(epoch, data_gen),
            total=n_batches,
            desc=f"{cfg.method} epoch {epoch + 1}/{cfg.epochs}",
            disable=not progress,
            leave=False,
        )
        for b, (x, s, has_map, y) in enumerate(bar):
            stop = should_stop is not None and should_stop()
            if dist is not None:  # every rank stops at the same batch
                stop = dist.stop_together(stop, device)
                x, s, has_map, y = dist.shard(x, s, has_map, y)
            if stop:
                bar.close()
                raise TrainingCancelled(f"stopped during epoch {epoch + 1}")
            method.scale = budget_scale(cfg, epoch, b, n_batches)
            loss, logits = method.loss(net, x, s, has_map, y, epoch, attack_gen)
            scaler.step(loss, opt)
            batch_loss = float(loss.detach()) * len(y)
            batch_correct = int((logits.argmax(1) == y).sum())
            loss_sum += batch_loss
            correct += batch_correct
            seen += len(y)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
            point_loss += batch_loss
            point_correct += batch_correct
            point_seen += len(y)
            if (b + 1) % every == 0 or b + 1 == n_batches:
                if dist is not None:  # the point's figures over every rank's shard
                    point_loss, point_correct, point_seen = dist.sum(
                        [point_loss, point_correct, point_seen], device
                    )
                    point_seen = int(point_seen)
                elapsed = time.perf_counter() - point_t0
                rate = point_seen / elapsed if elapsed > 0 else None
                if on_batch is not None:
                    on_batch(
                        {
                            "step": epoch * n_batches + b + 1,
                            "epoch": epoch + 1,
                            "batch": b + 1,
                            "batches": n_batches,
                            "loss": point_loss / point_seen,
                            "accuracy": point_correct / point_seen,
                            "images": point_seen,
                            "images_per_s": rate,
                            "device": runtime.get("device_name") or device,
                            "memory_bytes": _memory_bytes(device),
                            "work": {
                                "train_units": cfg.epochs * epoch_units,
                                "train_units_done": epoch * epoch_units
                                + (b + 1) / n_batches * len(train_set) * passes,
                                "evaluation_units": eval_units,
                                "processes": dist.world if dist else 1,
                                "units_per_s": rate * passes if rate else None,
                            },
                        }
                    )
                point_loss, point_correct, point_seen = 0.0, 0, 0
                point_t0 = time.perf_counter()
        bar.close()
        sched.step()
        if dist is not None:  # the epoch's figures over every rank's shard
            loss_sum, correct, seen = dist.sum([loss_sum, correct, seen], device)
            if not main:  # rank 0 evaluates, saves and reports; the others train on
                continue
        metrics = {
            "epoch": epoch + 1,
            "lr": opt.param_groups[0]["lr"],
            "train_eps": method.eps,  # training budget of the epoch's last batch (warm-up)
            "train_loss": loss_sum / max(1, seen),
            "train_accuracy": correct / max(1, seen),
            "clean_accuracy": clean_accuracy(distributed.unwrap(net), data.test, device),
            "robust_accuracy": robust_accuracy(
                distributed.unwrap(net),
                attacked,
                cfg.eps,
                steps=cfg.epoch_eval_steps,
                seed=cfg.seed * 1000 + epoch,
                device=device,
            ),
            "robust_subset": len(attacked),
            "robust_steps": cfg.epoch_eval_steps,  # one restart: a cheap progress signal
        }
        history.append(metrics)
        eval_units = evaluation_units()  # with this epoch's robust accuracy
        save_atomic(
            {
                "fingerprint": cfg.fingerprint(),
                "config": cfg.to_dict(),
                "model_spec": spec,
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "scaler": scaler.state_dict(),
                "loader": loader,
                "epoch": epoch + 1,
                "history": history,
                "rng": {
                    "data": data_gen.get_state(),
                    "attack": attack_gen.get_state(),
                    "torch": torch.get_rng_state(),
                    "numpy": np.random.get_state(),
                    "python": random.getstate(),
                    **accel.rng_state(device),
                },
            },
            ckpt_path,
        )
        _logger.info("epoch %d/%d %s", epoch + 1, cfg.epochs, metrics)
        if on_epoch is not None:
            on_epoch(epoch + 1, cfg.epochs, metrics)

    if dist is not None:
        dist.barrier()  # every rank has trained the last epoch
        if not main:  # rank 0 alone makes the final evaluation and writes the results
            distributed.shutdown(dist)
            return {}
        distributed.shutdown(dist)
    # the final evaluation always runs in fp32: a reduced-precision attack could be weaker
    model.set_precision("fp32")
    final = evaluate_model(
        model,
        data,
        **_evaluation(cfg),
        device=device,
        on_progress=on_evaluation,
        survival=history[-1]["robust_accuracy"] if history else cost.DEFAULT_SURVIVAL,
    )
    model.set_precision(cfg.precision)
    save_atomic(
        {
            "config": cfg.to_dict(),
            "model_spec": spec,
            "model": model.state_dict(),
            "method": method.record(),
        },
        out_dir / FINAL,
    )
    result = {
        "config": cfg.to_dict(),
        "method": method.record(),
        "data": data.source,
        "train_images_with_map": int(train_set.has_map.sum()),
        "batches_per_epoch": n_batches,
        "runtime": runtime,
        "history": history,
        "final": final,
    }
    _write_json_atomic(result, out_dir / METRICS)
    return result
