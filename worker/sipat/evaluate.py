"""Evaluations every run gets (docs/methods.md): clean and PGD-20 accuracy over an epsilon
grid, AutoAttack (torchattacks), the IGD / Duan et al. inequality tests, and agreement of
the model's salience with human masks."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .attacks import eval_mode, pgd_attack
from .checkpoint import load_checkpoint, load_model_from_checkpoint
from .data import DataBundle, TensorSet, load_data
from .salience import agreement_with_mask, salience_map

_logger = logging.getLogger(__name__)


def _batches(n: int, batch_size: int):
    for i in range(0, n, batch_size):
        yield torch.arange(i, min(i + batch_size, n))


@torch.no_grad()
def predict(model: nn.Module, x: Tensor) -> Tensor:
    with eval_mode(model):
        return model(x).argmax(1)


def clean_accuracy(
    model: nn.Module, ts: TensorSet, device: str = "cpu", batch_size: int = 256
) -> float:
    correct = 0
    for idx in _batches(len(ts), batch_size):
        x, _, _, y = ts.batch(idx, device)
        correct += int((predict(model, x) == y).sum())
    return correct / max(1, len(ts))


def robust_accuracy(
    model: nn.Module,
    ts: TensorSet,
    eps: float,
    *,
    steps: int = 20,
    alpha: float | None = None,
    seed: int = 0,
    device: str = "cpu",
    batch_size: int = 256,
) -> float:
    """Accuracy under L-inf PGD (random start, alpha = eps / 4 unless given)."""
    if eps == 0:
        return clean_accuracy(model, ts, device, batch_size)
    gen = torch.Generator(device=device).manual_seed(seed)
    alpha = eps / 4 if alpha is None else alpha
    correct = 0
    for idx in _batches(len(ts), batch_size):
        x, _, _, y = ts.batch(idx, device)
        x_adv = pgd_attack(model, x, y, eps, alpha, steps, generator=gen)
        correct += int((predict(model, x_adv) == y).sum())
    return correct / max(1, len(ts))


def autoattack_accuracy(
    model: nn.Module,
    ts: TensorSet,
    eps: float,
    n_classes: int,
    *,
    seed: int = 0,
    device: str = "cpu",
    batch_size: int = 256,
) -> float:
    """Robust accuracy under AutoAttack (standard, L-inf) from torchattacks."""
    import torchattacks

    with eval_mode(model):
        attack = torchattacks.AutoAttack(
            model, norm="Linf", eps=eps, version="standard", n_classes=n_classes, seed=seed
        )
        correct = 0
        for idx in _batches(len(ts), batch_size):
            x, _, _, y = ts.batch(idx, device)
            correct += int((predict(model, attack(x, y)) == y).sum())
    return correct / max(1, len(ts))


def true_logit_grad(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    with eval_mode(model), torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(model(xg).gather(1, y.view(-1, 1)).sum(), xg)
    return g


def gini(values: Tensor) -> Tensor:
    """Gini coefficient of each row of non-negative values (0 = equal, ~1 = one holds all)."""
    v = values.flatten(1).sort(1).values
    n = v.shape[1]
    i = torch.arange(1, n + 1, dtype=v.dtype, device=v.device)
    total = v.sum(1).clamp_min(1e-12)
    return ((2 * i - n - 1) * v).sum(1) / (n * total)


def _error_rate_top_k(model, x, y, score: Tensor, t: float, gen: torch.Generator) -> float:
    """Replace the top-k sub-pixels of `score` (k = t * C*H*W) with N(0, 1) noise, clamp."""
    b = x.shape[0]
    flat = x.flatten(1).clone()
    k = max(1, int(round(t * flat.shape[1])))
    idx = score.flatten(1).topk(k, 1).indices
    noise = torch.randn(b, k, generator=gen, device=x.device)
    flat.scatter_(1, idx, noise)
    x_noisy = flat.view_as(x).clamp(0, 1)
    return float((predict(model, x_noisy) != y).float().mean())


def inequality_tests(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    seed: int = 0,
    inductive_t: Sequence[float] = tuple(0.002 * i for i in range(1, 11)),
    random_t: Sequence[float] = tuple(0.02 * i for i in range(1, 11)),
    occlusion_n: int = 10,
    occlusion_r: int = 20,
    occlusion_value: float = 0.5,
) -> dict[str, Any]:
    """The IGD / Duan et al. protocol on images (x, y) the compared models all classify correctly.

    Returns error rates for inductive noise (top-k by signed true-class input gradient),
    random noise (k random sub-pixels), inductive occlusion (grey squares of radius r
    around the n top positions of the channel-mean attribution, a sample counts once it
    is misclassified), and the mean Gini of |input gradient|.
    """
    gen = torch.Generator(device=x.device).manual_seed(seed)
    g = true_logit_grad(model, x, y)
    out: dict[str, Any] = {"n": int(x.shape[0]), "gini": float(gini(g.abs()).mean())}
    out["inductive_noise"] = {
        f"{t:.3f}": _error_rate_top_k(model, x, y, g, t, gen) for t in inductive_t
    }
    out["random_noise"] = {
        f"{t:.2f}": _error_rate_top_k(
            model, x, y, torch.rand(g.shape, generator=gen, device=x.device), t, gen
        )
        for t in random_t
    }
    out["inductive_occlusion"] = _occlusion(
        model, x, y, g.mean(1), occlusion_n, occlusion_r, occlusion_value
    )
    return out


def _occlusion(
    model, x, y, attribution: Tensor, n_max: int, r_max: int, value: float
) -> dict[str, float]:
    """Error rate after covering squares of radius r around the top-n positions, per n."""
    b, _, h, w = x.shape
    top = attribution.flatten(1).topk(n_max, 1).indices
    ys, xs = top // w, top % w
    rr = torch.arange(h, device=x.device).view(1, 1, h, 1)
    cc = torch.arange(w, device=x.device).view(1, 1, 1, w)
    fooled = torch.zeros(b, dtype=torch.bool, device=x.device)
    result = {}
    for n in range(1, n_max + 1):
        cy, cx = ys[:, :n].view(b, n, 1, 1), xs[:, :n].view(b, n, 1, 1)
        for r in range(1, r_max + 1):
            live = ~fooled
            if not live.any():
                break
            cover = (((rr - cy).abs() <= r) & ((cc - cx).abs() <= r)).any(1, keepdim=True)
            x_occ = torch.where(cover[live], torch.full_like(x[live], value), x[live])
            wrong = predict(model, x_occ) != y[live]
            fooled[live] = wrong
        result[str(n)] = float(fooled.float().mean())
    return result


def commonly_correct(
    models: Sequence[nn.Module], ts: TensorSet, limit: int, device: str = "cpu"
) -> Tensor:
    """Indices of (up to `limit`) test images that every model classifies correctly."""
    keep = []
    for idx in _batches(len(ts), 256):
        x, _, _, y = ts.batch(idx, device)
        ok = torch.ones(len(idx), dtype=torch.bool, device=device)
        for m in models:
            ok &= predict(m, x) == y
        keep.append(idx[ok.cpu()])
    return torch.cat(keep)[:limit]


def salience_agreement(
    model: nn.Module,
    ts: TensorSet,
    kind: str = "gradcam",
    device: str = "cpu",
    batch_size: int = 256,
) -> dict[str, float] | None:
    """Mean agreement of the model's salience with the human masks of test images that have one."""
    idx_all = torch.nonzero(ts.has_map).flatten()
    if len(idx_all) == 0:
        return None
    acc: dict[str, list[Tensor]] = {"top_mass_in_mask": [], "iou_top_k": []}
    for j in _batches(len(idx_all), batch_size):
        x, s, _, y = ts.batch(idx_all[j], device)
        a = agreement_with_mask(salience_map(model, x, kind, y), s)
        for k in acc:
            acc[k].append(a[k])
    return {
        "kind": kind,
        "n": int(len(idx_all)),
        **{k: float(torch.cat(v).mean()) for k, v in acc.items()},
    }


def evaluate_model(
    model: nn.Module,
    data: DataBundle,
    eps_grid: Sequence[float],
    *,
    subset: int = 500,
    steps: int = 20,
    autoattack_eps: float | None = None,
    autoattack_n: int = 0,
    inequality_n: int = 0,
    seed: int = 0,
    device: str = "cpu",
) -> dict[str, Any]:
    """Clean accuracy (whole test set), PGD-`steps` accuracy per eps on `subset` test images
    spread over the classes (TensorSet.spread_subset; clean accuracy on those same images as
    `subset_clean_accuracy`), optional AutoAttack on `autoattack_n` images, optional
    inequality tests on up to `inequality_n` correctly classified images, and salience
    agreement."""
    test = data.test
    sub = test.spread_subset(subset)
    out: dict[str, Any] = {
        "clean_accuracy": clean_accuracy(model, test, device),
        "n_test": len(test),
    }
    out["robust_subset"] = len(sub)
    out["subset_clean_accuracy"] = (
        out["clean_accuracy"] if len(sub) == len(test) else clean_accuracy(model, sub, device)
    )
    out["pgd_steps"] = steps
    out["pgd_accuracy"] = {
        f"{e:.6g}": robust_accuracy(model, sub, e, steps=steps, seed=seed, device=device)
        for e in eps_grid
    }
    if autoattack_n and autoattack_eps is not None:
        aa = test.spread_subset(autoattack_n)
        out["autoattack"] = {
            "eps": autoattack_eps,
            "n": len(aa),
            "accuracy": autoattack_accuracy(
                model, aa, autoattack_eps, data.num_classes, seed=seed, device=device
            ),
        }
    if inequality_n:
        idx = commonly_correct([model], test, inequality_n, device)
        x, _, _, y = test.batch(idx, device)
        out["inequality"] = inequality_tests(model, x, y, seed=seed) if len(idx) else None
    agreement = salience_agreement(model, test, "gradcam", device)
    if agreement is not None:
        out["salience_agreement"] = agreement
    return out


def evaluate_checkpoint(
    path: str | Path,
    data_dir: str | Path | DataBundle | None,
    eps_grid: Sequence[float] = (1 / 255, 2 / 255, 4 / 255, 8 / 255),
    *,
    subset: int = 500,
    autoattack_n: int = 0,
    autoattack_eps: float | None = None,
    inequality_n: int = 0,
    device: str = "cpu",
) -> dict[str, Any]:
    """Evaluate a saved model on a data directory (or a DataBundle); None = the run's own data."""
    ckpt = load_checkpoint(path, device)
    model = load_model_from_checkpoint(path, device)
    cfg = ckpt.get("config", {})
    if isinstance(data_dir, DataBundle):
        data = data_dir
    else:
        root = data_dir if data_dir is not None else cfg.get("data_dir")
        if root is None:
            raise ValueError("no data directory given and the checkpoint names none")
        data = load_data(
            root,
            ckpt["model_spec"]["image_size"],
            cfg.get("test_fraction", 0.2),
            cfg.get("seed", 0),
        )
    if autoattack_eps is None:
        autoattack_eps = cfg.get("eps", 8 / 255)
    result = evaluate_model(
        model,
        data,
        eps_grid,
        subset=subset,
        autoattack_eps=autoattack_eps,
        autoattack_n=autoattack_n,
        inequality_n=inequality_n,
        seed=cfg.get("seed", 0),
        device=device,
    )
    result["checkpoint"] = str(path)
    return result
