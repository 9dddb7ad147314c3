"""L-infinity attacks built from one generic loop and small step classes.

Every attack here follows the PGD core described in docs/training.md: a per-pixel budget map
`eps_map` and a per-pixel step mask `m` in {0, 1}. Inputs are images in [0, 1];
normalisation lives inside the model, so every epsilon is in pixel units.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _affine_batchnorm(self: nn.modules.batchnorm._BatchNorm, x: Tensor) -> Tensor:
    """Eval-mode BatchNorm written as the per-channel affine map it is.

    The same numbers as the native kernel (to float rounding), but its derivatives are plain
    multiplications: the native kernel's backward, and above all its double backward (IGD),
    carry the training-mode formula and cost noticeably more on CPU.
    """
    scale = torch.rsqrt(self.running_var + self.eps)  # type: ignore[operator]
    if self.weight is not None:
        scale = scale * self.weight
    shift = -self.running_mean * scale  # type: ignore[operator]
    if self.bias is not None:
        shift = shift + self.bias
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return torch.addcmul(shift.view(shape), x, scale.view(shape))


@contextlib.contextmanager
def eval_mode(model: nn.Module, affine_batchnorm: bool = True) -> Iterator[nn.Module]:
    """Put `model` in eval mode for the block and restore the mode it was in.

    Inside the block, BatchNorm layers with running statistics compute as affine maps
    (_affine_batchnorm) unless affine_batchnorm is False (forward-only work on small batches,
    such as AutoAttack's Square queries, is faster with the native kernel); nested blocks on
    the same model leave the outer one's in place.
    """
    was_training = model.training
    model.eval()
    patched = [
        m
        for m in model.modules()
        if affine_batchnorm
        and isinstance(m, nn.modules.batchnorm._BatchNorm)
        and m.running_mean is not None
        and m.running_var is not None
        and "forward" not in m.__dict__
    ]
    for m in patched:
        m.forward = types.MethodType(_affine_batchnorm, m)  # type: ignore[method-assign]
    try:
        yield model
    finally:
        for m in patched:
            del m.forward
        model.train(was_training)


class MaskedLinfStep:
    """One L-inf step with a per-pixel budget and a per-pixel step mask.

    eps_map: budget, broadcastable to the batch (B x C x H x W, B x 1 x H x W or a float).
    alpha: step size in pixel units.
    step_mask: 1 where the adversary may move the pixel, 0 where it must not (None = 1).
    """

    def __init__(self, eps_map: Tensor | float, alpha: float, step_mask: Tensor | None = None):
        self.eps_map = eps_map
        self.alpha = alpha
        self.step_mask = step_mask

    def _masked(self, t: Tensor) -> Tensor:
        return t if self.step_mask is None else t * self.step_mask

    def random_perturb(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return self._masked((2 * u - 1) * self.eps_map)

    def step(self, delta: Tensor, grad: Tensor) -> Tensor:
        return delta + self._masked(self.alpha * grad.sign())

    def project(self, x: Tensor, delta: Tensor) -> Tensor:
        e = self.eps_map
        if isinstance(e, Tensor):  # a per-pixel budget map
            delta = torch.maximum(torch.minimum(delta, e), -e)
        else:  # one budget for every pixel: a single clamp kernel
            delta = delta.clamp(-float(e), float(e))
        return (x + delta).clamp_(0, 1) - x


class NoisyLinfStep(MaskedLinfStep):
    """N-FGSM's step (de Jorge et al. 2022): a start in a wider noise box, no eps clipping.

    The start is uniform in [-noise, noise] (noise = noise_ratio * eps), the step adds
    alpha * sign(grad), and the only projection is the [0, 1] image range: the training
    perturbation reaches up to noise + alpha per pixel, which is what keeps single-step
    training from catastrophic overfitting. The step mask holds exactly as in PGD.
    """

    def __init__(
        self,
        eps_map: Tensor | float,
        noise_ratio: float,
        alpha_ratio: float,
        step_mask: Tensor | None = None,
    ):
        super().__init__((noise_ratio + alpha_ratio) * eps_map, alpha_ratio * eps_map, step_mask)
        self.noise = noise_ratio * eps_map

    def random_perturb(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return self._masked((2 * u - 1) * self.noise)


def input_grad_scale(model: nn.Module) -> float:
    """The constant an input gradient's loss is multiplied by (models.Normalized: 1 except
    in fp16, where small gradients would flush to zero). Attacks use the gradient's sign."""
    return float(getattr(model, "input_grad_scale", 1.0))


def _input_grad(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """Gradient of the summed cross-entropy w.r.t. the input only (no weight gradients),
    up to the positive factor input_grad_scale(model); fp32 like x."""
    x = x.detach().requires_grad_(True)
    loss = F.cross_entropy(model(x), y, reduction="sum")
    (grad,) = torch.autograd.grad(loss * input_grad_scale(model), x)
    return grad


def run_attack(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    step: MaskedLinfStep,
    steps: int,
    *,
    random_start: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The generic loop: random start, then `steps` times grad -> step -> project.

    The model is in eval mode during the attack and back in its own mode afterwards;
    only the input gradient is computed, so parameters never receive a .grad.
    """
    x = x.detach()
    with eval_mode(model):
        if random_start:
            delta = step.project(x, step.random_perturb(x, generator))
        else:
            delta = torch.zeros_like(x)
        for _ in range(steps):
            grad = _input_grad(model, x + delta, y)
            delta = step.project(x, step.step(delta, grad))
    return (x + delta).detach()


def pgd_attack(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: Tensor | float,
    alpha: float,
    steps: int,
    *,
    step_mask: Tensor | None = None,
    random_start: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """L-inf PGD (Madry et al. 2018) with a per-pixel budget and step mask.

    x: images in [0, 1], B x C x H x W; y: labels; eps: float or per-pixel budget map;
    alpha: step size (literature default 2/255); steps: K (default 10 in the literature);
    step_mask: {0, 1} map, pixels with 0 are never changed (SIP-AT); random_start: uniform
    start in the (masked) budget. Returns x_adv with |x_adv - x| <= eps and x_adv in [0, 1].
    """
    return run_attack(
        model,
        x,
        y,
        MaskedLinfStep(eps, alpha, step_mask),
        steps,
        random_start=random_start,
        generator=generator,
    )


def fgsm_rs_attack(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: Tensor | float,
    *,
    alpha_ratio: float = 1.25,
    step_mask: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """FGSM with random start ("fast adversarial training", Wong et al. 2020).

    One step of size alpha = alpha_ratio * eps (1.25 in the paper) from a uniform start
    in the budget, then projection; `step_mask` restricts it as in SIP-AT.
    """
    alpha = alpha_ratio * (float(eps) if not isinstance(eps, Tensor) else eps)
    return run_attack(
        model,
        x,
        y,
        MaskedLinfStep(eps, alpha, step_mask),
        1,
        random_start=True,
        generator=generator,
    )


def n_fgsm_attack(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: Tensor | float,
    *,
    noise_ratio: float = 2.0,
    alpha_ratio: float = 1.0,
    step_mask: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """N-FGSM ("Make some noise", de Jorge et al. 2022): single-step training examples.

    Uniform noise in [-noise_ratio * eps, noise_ratio * eps], then one signed-gradient step
    of alpha_ratio * eps (2 and 1 in the paper), clipped to [0, 1] only. Not an evaluation
    attack: |x_adv - x| may reach (noise_ratio + alpha_ratio) * eps by design. Pixels where
    `step_mask` is 0 are never changed.
    """
    return run_attack(
        model,
        x,
        y,
        NoisyLinfStep(eps, noise_ratio, alpha_ratio, step_mask),
        1,
        random_start=True,
        generator=generator,
    )
