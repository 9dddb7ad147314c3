"""The "inequality" threats of IGD (Chen, Dong, Xie) and Duan et al., on one image set.

Adversarial training concentrates a model's input gradient on few sub-pixels; these tests
measure what that costs (docs/training.md):

- inductive noise: N(0, 1) noise on the top-k sub-pixels (of C*H*W) by the signed input
  gradient of the true-class logit, k = t * C*H*W, both added to them (IGD's main variant)
  and replacing them; clamped to [0, 1];
- random noise: N(0, 1) added on k random sub-pixels;
- inductive occlusion: the channel-mean attribution's top-n positions (n = 1..N), each
  covered by a square of side 2r (grey 0.5 or white 1); a sample counts as an error from
  the first (r, n) that misclassifies it, so the error rate is reported per radius r;
- the Gini coefficient of |input gradient| (0 = spread evenly, 1 = one sub-pixel holds all).

Every model is scored on the same images (`common_correct_subset`) with the same noise
draws, so rates are comparable across runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .attacks import eval_mode
from .data import ImageSet, spread_indices

INDUCTIVE_T = tuple(round(0.002 * i, 3) for i in range(1, 11))
RANDOM_T = tuple(round(0.02 * i, 2) for i in range(1, 11))
OCCLUSION_N = 10
OCCLUSION_R = 20
OCCLUSION_VALUES = {"grey": 0.5, "white": 1.0}

Progress = Callable[[float], None]


@torch.no_grad()
def _wrong(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    with eval_mode(model):
        return model(x).argmax(1) != y


def _rate(flags: Tensor) -> float:
    """Share of True flags, as an exact count over the images (not a float32 mean)."""
    return int(flags.sum()) / len(flags) if len(flags) else 0.0


def true_logit_grad(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """Signed gradient of the true-class logit w.r.t. the input, in eval mode."""
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


def common_correct_subset(
    models: Sequence[nn.Module], ts: ImageSet, limit: int, device: str = "cpu"
) -> Tensor:
    """Indices into `ts` of up to `limit` images that every model classifies correctly,
    spread over the classes in proportion (TensorSet.spread_subset's fixed order). `ts` in
    memory or streamed (a FileSet decodes 256 images at a time)."""
    keep = []
    for start in range(0, len(ts), 256):
        idx = torch.arange(start, min(start + 256, len(ts)))
        x, _, _, y = ts.batch(idx, device)
        ok = torch.ones(len(idx), dtype=torch.bool)
        for m in models:
            ok &= ~_wrong(m, x, y).cpu()
        keep.append(idx[ok])
    correct = torch.cat(keep) if keep else torch.zeros(0, dtype=torch.long)
    if len(correct) <= limit:
        return correct
    return correct[spread_indices(ts.labels[correct], limit)]


def _noise_on(x: Tensor, positions: Tensor, gen: torch.Generator, replace: bool) -> Tensor:
    flat = x.flatten(1).clone()
    noise = torch.randn(positions.shape, generator=gen, device=x.device)
    if replace:
        flat.scatter_(1, positions, noise)
    else:
        flat.scatter_add_(1, positions, noise)
    return flat.view_as(x).clamp_(0, 1)


def noise_error_rates(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    score: Tensor | None,
    ts: Sequence[float],
    *,
    replace: bool,
    seed: int,
) -> dict[str, float]:
    """Error rate per t with N(0, 1) noise on k = t*C*H*W sub-pixels: the top-k of `score`,
    or k random ones when score is None. The noise draws depend only on the seed."""
    out = {}
    d = x[0].numel()
    for t in ts:
        gen = torch.Generator(device=x.device).manual_seed(seed)
        k = max(1, int(round(t * d)))
        if score is None:
            positions = torch.rand(x.shape[0], d, generator=gen, device=x.device).topk(k, 1).indices
        else:
            positions = score.flatten(1).topk(k, 1).indices
        out[f"{t:g}"] = _rate(_wrong(model, _noise_on(x, positions, gen, replace), y))
    return out


def occlusion_error_rates(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    attribution: Tensor,
    *,
    n_max: int = OCCLUSION_N,
    r_max: int = OCCLUSION_R,
    value: float = 0.5,
) -> dict[str, float]:
    """Cumulative error rate per radius r: a sample is an error once covering squares of
    side 2r around its top-n attribution positions (n <= n_max) misclassifies it."""
    b, _, h, w = x.shape
    top = attribution.flatten(1).topk(min(n_max, h * w), 1).indices
    ys, xs = (top // w).view(b, -1, 1, 1), (top % w).view(b, -1, 1, 1)
    rows = torch.arange(h, device=x.device).view(1, 1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, 1, w)
    fooled = torch.zeros(b, dtype=torch.bool, device=x.device)
    out = {}
    for r in range(1, r_max + 1):
        for n in range(1, top.shape[1] + 1):
            live = ~fooled
            if not live.any():
                break
            dy, dx = rows - ys[live, :n], cols - xs[live, :n]  # side 2r: offsets -r .. r - 1
            square = (dy >= -r) & (dy < r) & (dx >= -r) & (dx < r)
            cover = square.any(1, keepdim=True)
            x_occ = torch.where(cover, torch.full_like(x[live], value), x[live])
            fooled[live] = _wrong(model, x_occ, y[live])
        out[str(r)] = _rate(fooled)
    return out


def inequality_tests(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    seed: int = 0,
    inductive_t: Sequence[float] = INDUCTIVE_T,
    random_t: Sequence[float] = RANDOM_T,
    occlusion_n: int = OCCLUSION_N,
    occlusion_r: int = OCCLUSION_R,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Every test on images (x, y); returns error rates keyed by t or r, and Gini."""
    report = progress or (lambda _share: None)
    g = true_logit_grad(model, x, y)
    out: dict[str, Any] = {
        "n": int(x.shape[0]),
        "gini": float(gini(g.abs()).mean()) if len(x) else None,
    }
    if not len(x):
        return out
    report(0.05)
    out["inductive_noise_added"] = noise_error_rates(
        model, x, y, g, inductive_t, replace=False, seed=seed
    )
    report(0.2)
    out["inductive_noise_replaced"] = noise_error_rates(
        model, x, y, g, inductive_t, replace=True, seed=seed
    )
    report(0.35)
    out["random_noise_added"] = noise_error_rates(
        model, x, y, None, random_t, replace=False, seed=seed
    )
    report(0.5)
    attribution = g.mean(1)
    out["inductive_occlusion"] = {}
    for i, (name, value) in enumerate(OCCLUSION_VALUES.items()):
        out["inductive_occlusion"][name] = occlusion_error_rates(
            model, x, y, attribution, n_max=occlusion_n, r_max=occlusion_r, value=value
        )
        report(0.5 + 0.5 * (i + 1) / len(OCCLUSION_VALUES))
    return out
