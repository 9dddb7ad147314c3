"""Salience maps (Grad-CAM, input gradient), PART's budget map, agreement with human masks.

A salience map is B x 1 x H x W in [0, 1] (1 = salient), normalised per image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attacks import eval_mode


def normalize_per_image(s: Tensor, eps: float = 1e-12) -> Tensor:
    """Min-max scale each image's map to [0, 1] (a constant map becomes 0)."""
    flat = s.flatten(1)
    lo = flat.min(1, keepdim=True).values
    hi = flat.max(1, keepdim=True).values
    return ((flat - lo) / (hi - lo).clamp_min(eps)).view_as(s)


def binarise(s: Tensor, threshold: float = 0.5) -> Tensor:
    """1 where s >= threshold, else 0 (same dtype as s)."""
    return (s >= threshold).to(s.dtype)


def grad_cam(model: nn.Module, x: Tensor, target: Tensor | None = None) -> Tensor:
    """Batched Grad-CAM (Selvaraju et al. 2017) at `model.cam_layer`, raw (not normalised).

    One forward and one backward for the whole batch; target defaults to the predicted
    class. Returns B x 1 x H x W, non-negative, bilinearly upsampled to the input size.
    The model runs in eval mode and its parameters receive no gradient.
    """
    store: dict[str, Tensor] = {}
    handle = model.cam_layer.register_forward_hook(lambda _m, _i, o: store.__setitem__("a", o))
    try:
        with eval_mode(model), torch.enable_grad():
            logits = model(x.detach())
            if target is None:
                target = logits.argmax(1)
            score = logits.gather(1, target.view(-1, 1)).sum()
            act = store["a"]
            (grad,) = torch.autograd.grad(score, act)
    finally:
        handle.remove()
    weights = grad.float().mean((2, 3), keepdim=True)  # fp32 whatever the model's precision
    cam = F.relu((weights * act.detach().float()).sum(1, keepdim=True))
    return F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)


def input_gradient_salience(
    model: nn.Module, x: Tensor, target: Tensor | None = None, smooth: int = 3
) -> Tensor:
    """|d logit_target / d x|, max over channels, box-smoothed, normalised per image."""
    with eval_mode(model), torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        logits = model(xg)
        if target is None:
            target = logits.argmax(1)
        (g,) = torch.autograd.grad(logits.gather(1, target.view(-1, 1)).sum(), xg)
    s = g.abs().amax(1, keepdim=True)
    if smooth > 1:
        s = F.avg_pool2d(s, smooth, stride=1, padding=smooth // 2, count_include_pad=False)
    return normalize_per_image(s)


def salience_map(model: nn.Module, x: Tensor, kind: str, target: Tensor | None = None) -> Tensor:
    """Automatic salience in [0, 1] per image: kind is 'gradcam' or 'input_gradient'."""
    if kind == "gradcam":
        return normalize_per_image(grad_cam(model, x, target))
    if kind == "input_gradient":
        return input_gradient_salience(model, x, target)
    raise ValueError(f"unknown salience kind {kind!r}")


def part_budget_map(cam: Tensor, eps: float, eps_low: float, channels: int) -> Tensor:
    """PART's per-pixel budget from a raw CAM (B x 1 x H x W).

    c = CAM squared; z-score per image; eps where z > 1, else eps_low. Computed from the
    CAM itself (no colour map), so it is monotonic in the CAM and equal on every channel.
    """
    c = cam.flatten(1) ** 2
    z = (c - c.mean(1, keepdim=True)) / c.std(1, keepdim=True).clamp_min(1e-12)
    high = torch.full_like(z, eps)
    low = torch.full_like(z, eps_low)
    m = torch.where(z > 1, high, low).view_as(cam)
    return m.expand(-1, channels, -1, -1)


def agreement_with_mask(
    s: Tensor, mask: Tensor, top_fraction: float | None = None
) -> dict[str, Tensor]:
    """Per-image agreement of a model's salience `s` with a human mask (both B x 1 x H x W).

    Take the top-k pixels of s, k = top_fraction * H * W (default: the mask's own area,
    so a perfect map scores 1). Returns `top_mass_in_mask` (share of the salience mass of
    those top pixels that lies inside the mask) and `iou_top_k` (IoU of the top-k set and
    the mask), each a tensor of B values.
    """
    sf = s.flatten(1)
    mf = (mask.flatten(1) >= 0.5).to(sf.dtype)
    n = sf.shape[1]
    if top_fraction is None:
        k = mf.sum(1).clamp(1, n).long()
    else:
        k = torch.full((sf.shape[0],), max(1, round(top_fraction * n)), dtype=torch.long)
    order = sf.argsort(1, descending=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(n, device=sf.device).expand_as(order))
    top = (rank < k.view(-1, 1).to(sf.device)).to(sf.dtype)
    mass = (sf * top).sum(1).clamp_min(1e-12)
    inside = (sf * top * mf).sum(1)
    inter = (top * mf).sum(1)
    union = ((top + mf) > 0).to(sf.dtype).sum(1).clamp_min(1)
    return {"top_mass_in_mask": inside / mass, "iou_top_k": inter / union}
