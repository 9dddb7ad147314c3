"""Checkpoints: written atomically (temp file + os.replace), loaded back into a model."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .models import build_model


def save_atomic(obj: Any, path: Path) -> None:
    """torch.save to a temp file in the same directory, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def model_from_spec(spec: dict[str, Any]) -> nn.Module:
    return build_model(
        spec["name"],
        spec["num_classes"],
        spec["in_channels"],
        spec["image_size"],
        spec["mean"],
        spec["std"],
    )


def load_model_from_checkpoint(path: str | Path, device: str = "cpu") -> nn.Module:
    """The model stored in a checkpoint (final.pt or checkpoint.pt), in eval mode."""
    ckpt = torch.load(Path(path), map_location=device, weights_only=False)
    model = model_from_spec(ckpt["model_spec"])
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval()


def load_checkpoint(path: str | Path, device: str = "cpu") -> dict[str, Any]:
    return torch.load(Path(path), map_location=device, weights_only=False)
