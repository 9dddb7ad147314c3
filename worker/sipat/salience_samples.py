"""Pictures of what a trained model looks at: on a few test images, the image, the model's
Grad-CAM and the human mask as PNGs, and salience.json describing them (the run page's
"salience" panel reads it)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .checkpoint import load_model_from_checkpoint
from .config import TrainConfig
from .data import load_data
from .salience import agreement_with_mask, salience_map

SAMPLES = 6


def _png(unit: np.ndarray, path: Path) -> None:
    """Save an array in [0, 1] (H x W, or H x W x C) as an 8-bit PNG; one channel as grey."""
    img = (unit * 255).round().astype(np.uint8)
    Image.fromarray(img[..., 0] if img.ndim == 3 and img.shape[-1] == 1 else img).save(path, "PNG")


def spread_over_classes(candidates: Sequence[int], labels: Sequence[int], n: int) -> list[int]:
    """Up to n of the candidate indices, taking one of each class in turn (in class order,
    each class's candidates in their order), so that the samples show several classes
    rather than the first class of a class-sorted test set."""
    by_class: dict[int, list[int]] = {}
    for i in candidates:
        by_class.setdefault(int(labels[i]), []).append(i)
    queues = [by_class[c] for c in sorted(by_class)]
    picked: list[int] = []
    depth = 0
    while len(picked) < n and any(depth < len(q) for q in queues):
        picked.extend(q[depth] for q in queues if depth < len(q) and len(picked) < n)
        depth += 1
    return picked


def write_salience_samples(
    out_dir: Path,
    data_dir: Path,
    cfg: TrainConfig,
    agreement: dict[str, Any] | None,
    test_ids: Sequence[Any] | None = None,
    n: int = SAMPLES,
) -> dict[str, Any]:
    """Write out_dir/salience/: for `n` test images with a human mask (or `n` at all), spread
    over the classes (spread_over_classes), s<j>_image.png, s<j>_model.png (Grad-CAM of
    out_dir/final.pt) and s<j>_human.png, plus salience.json. `test_ids[i]` names test
    image i for the caller (the app's image id); `agreement` is the run's overall salience
    agreement. Returns the record."""
    data = load_data(data_dir, cfg.image_size, cfg.test_fraction, cfg.seed)
    model = load_model_from_checkpoint(out_dir / "final.pt", cfg.device)
    test = data.test
    with_map = torch.nonzero(test.has_map).flatten().tolist()
    pick = spread_over_classes(with_map or list(range(len(test))), test.labels.tolist(), n)
    folder = out_dir / "salience"
    folder.mkdir(exist_ok=True)
    samples = []
    if pick:
        x, s, has, y = test.batch(torch.tensor(pick), cfg.device)
        maps = salience_map(model, x, "gradcam", y)
        agree = agreement_with_mask(maps, s)["top_mass_in_mask"] if bool(has.any()) else None
        with torch.no_grad():
            pred = model(x).argmax(1)
        for j, i in enumerate(pick):
            _png(x[j].cpu().permute(1, 2, 0).numpy(), folder / f"s{j}_image.png")
            _png(maps[j, 0].detach().cpu().numpy(), folder / f"s{j}_model.png")
            human = None
            if bool(has[j]):
                _png(s[j, 0].cpu().numpy(), folder / f"s{j}_human.png")
                human = f"s{j}_human.png"
            samples.append(
                {
                    "image_id": test_ids[i] if test_ids is not None and i < len(test_ids) else None,
                    "label": data.classes[int(y[j])],
                    "predicted": data.classes[int(pred[j])],
                    "agreement": float(agree[j]) if agree is not None and bool(has[j]) else None,
                    "image": f"s{j}_image.png",
                    "model": f"s{j}_model.png",
                    "human": human,
                }
            )
    record = {"kind": "gradcam", "agreement": agreement, "samples": samples}
    (folder / "salience.json").write_text(json.dumps(record, indent=2))
    return record
