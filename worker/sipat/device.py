"""Where and how a run computes: device, precision, memory format, compilation, RNG state.

The accelerator settings of docs/training.md, in one place:
- precision: fp32, bf16 or fp16. The model's forward runs under torch.autocast (models.
  Normalized.set_precision); the image, the perturbation, its projection, the logits and the
  loss stay fp32, so every invariant of the attacks holds exactly. fp16 adds a gradient
  scaler to the weight update (StepScaler) and a constant loss scale to input gradients.
- channels-last weights and cudnn.benchmark on CUDA (cudnn.benchmark is off when the run asks
  for deterministic algorithms).
- compile: torch.compile of the model, tried once on a real batch; where it cannot compile,
  the eager model is used and the reason is logged and recorded.
- the RNG state of every generator a run draws from, the CUDA ones included, for exact resume.
"""

from __future__ import annotations

import logging
import os
import platform
from typing import Any

import torch
from torch import Tensor, nn

_logger = logging.getLogger(__name__)


def is_cuda(device: str | torch.device) -> bool:
    return torch.device(device).type == "cuda"


def configure_backends(device: str, deterministic: bool) -> dict[str, Any]:
    """cudnn.benchmark (or deterministic algorithms) for a CUDA run; what was set."""
    if not is_cuda(device):
        return {}
    if deterministic:
        # cuBLAS needs a fixed workspace for deterministic GEMMs (CUDA >= 10.2)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch.backends.cudnn.benchmark = True
    # PyTorch's TF32 defaults are left as they are (convolutions TF32, matmuls not) and
    # recorded: they decide what "fp32" means on an Ampere or later GPU
    return {
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "deterministic": deterministic,
        "tf32_conv": torch.backends.cudnn.allow_tf32,
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
    }


def prepare_model(model: nn.Module, device: str, precision: str) -> nn.Module:
    """Move the model to its device, channels-last on CUDA, its forward in `precision`."""
    model = model.to(device)
    if is_cuda(device):
        model = model.to(memory_format=torch.channels_last)
    model.set_precision(precision)  # type: ignore[operator]
    return model


def to_device(t: Tensor, device: str | torch.device) -> Tensor:
    """Host to device: from pinned memory without blocking on CUDA, as is elsewhere."""
    if not is_cuda(device) or t.is_cuda:
        return t.to(device)
    if not t.is_pinned():
        t = t.pin_memory()
    return t.to(device, non_blocking=True)


class StepScaler:
    """The weight update: loss.backward() and opt.step(), through a GradScaler for fp16.

    bf16 has fp32's exponent range and needs no scaling; fp16 does (small gradients flush
    to zero). The scaler's state travels in the checkpoint so a resumed run scales alike.
    """

    def __init__(self, device: str, precision: str):
        self.scaler = (
            torch.amp.GradScaler(torch.device(device).type) if precision == "fp16" else None
        )

    def step(self, loss: Tensor, opt: torch.optim.Optimizer) -> None:
        opt.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            opt.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.step(opt)
        self.scaler.update()

    def state_dict(self) -> dict[str, Any] | None:
        return self.scaler.state_dict() if self.scaler is not None else None

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)


def compile_model(
    model: nn.Module, sample: Tensor, labels: Tensor, backend: str = "inductor"
) -> tuple[nn.Module, str | None]:
    """torch.compile(model), checked on one real forward and backward in train and eval mode.

    Returns (the model to train with, None) or, where it cannot compile, (model, reason):
    the eager model, and a sentence for the log and the run record. The compiled module
    shares the eager one's parameters; checkpoints are written from the eager one.
    backend: torch.compile's backend (config.compile_backend).
    """
    if platform.system() == "Windows" and backend == "inductor":
        return model, "torch.compile's inductor backend does not run on Windows"
    was_training = model.training
    # the trial's train-mode forward would move BatchNorm's running statistics: restore them
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    try:
        compiled = torch.compile(model, backend=backend)
        for mode in (True, False):
            model.train(mode)
            x = sample.detach().clone().requires_grad_(True)
            loss = torch.nn.functional.cross_entropy(compiled(x), labels)
            torch.autograd.grad(loss, [x, *[p for p in model.parameters() if p.requires_grad]])
    except Exception as exc:  # noqa: BLE001 - any compiler failure means "run eager"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        reason = f"{type(exc).__name__}: {first}"[:500]
        _logger.warning("torch.compile failed, training the eager model: %s", reason)
        torch._dynamo.reset()
        return model, reason
    finally:
        model.load_state_dict(saved)
        model.train(was_training)
    # later recompilations (other batch sizes, eval-mode patches) fall back to eager on error
    torch._dynamo.config.suppress_errors = True
    return compiled, None


def rng_state(device: str) -> dict[str, Any]:
    """The global CUDA RNG states (dropout, torch.rand without a generator) on CUDA."""
    return {"cuda": torch.cuda.get_rng_state_all()} if is_cuda(device) else {}


def set_rng_state(state: dict[str, Any], device: str) -> None:
    if is_cuda(device) and state.get("cuda") is not None:
        torch.cuda.set_rng_state_all(state["cuda"])


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe(device: str, precision: str) -> dict[str, Any]:
    """The device part of a run's reproducibility record."""
    out: dict[str, Any] = {"device": str(device), "precision": precision}
    if is_cuda(device):
        index = torch.device(device).index or 0
        out["device_name"] = torch.cuda.get_device_name(index)
        out["cuda"] = torch.version.cuda
        out["cudnn"] = torch.backends.cudnn.version()
        out["channels_last"] = True
    else:
        out["device_name"] = _cpu_name()
        out["threads"] = torch.get_num_threads()
        out["channels_last"] = False
    return out
