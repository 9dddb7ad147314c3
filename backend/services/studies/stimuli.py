"""Making a study's stimuli, the data side: what the plan still needs, the source pixels of
an image, the seed of each stimulus, storing each generated PNG with its row, the progress,
the model's accuracy, and what a finished generation adds to the study's config (its state,
generating, ready or failed, is backend/services/study_lifecycle.py's).

The attack itself runs in the worker (worker.study_tasks calls the training library's
worker.sipat.stimuli); nothing here loads torch. Idempotent: a stimulus whose row exists is
never made again, so a redelivered task continues where the previous delivery stopped.
"""

from __future__ import annotations

import hashlib
import io
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image as PILImage
from sqlalchemy.orm import Session

from backend.core.storage import Storage
from backend.models import Image, Stimulus, Study
from backend.services.studies.common import (
    StimulusKey,
    eps_key,
    public_id,
    stimuli_by_key,
    stored_png,
    stored_png_size,
)
from backend.services.studies.design import StimulusSpec, stimulus_plan
from backend.services.studies.preview import source_array


def stimulus_seed(study_seed: int, spec: StimulusSpec) -> int:
    """A per-stimulus seed, derived (not drawn) so that it is the same on every delivery."""
    text = f"{study_seed}:{spec.purpose}:{spec.run_id}:{spec.image_id}:{eps_key(spec.eps_255)}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") & 0x7FFFFFFF


@dataclass
class Generation:
    """A study's stimulus generation under way: the plan, the stimuli that exist (those made
    now included) and how many of the plan are done."""

    study: Study
    specs: list[StimulusSpec]
    have: dict[StimulusKey, Stimulus]
    done: int
    made: int = 0
    seed: int = field(init=False)

    def __post_init__(self) -> None:
        self.seed = int(self.study.config.get("seed", 0))

    @property
    def total(self) -> int:
        return len(self.specs)

    def groups(self) -> Iterator[tuple[int | None, int, list[StimulusSpec]]]:
        """(run id, image id, its missing stimuli) per source image, in plan order; an image
        with nothing missing is left out. Lazy: what is missing is decided when a group is
        reached, after the groups before it were stored."""
        groups: dict[tuple[int | None, int], list[StimulusSpec]] = {}
        for s in self.specs:
            groups.setdefault((s.run_id, s.image_id), []).append(s)
        for (run_id, image_id), group in groups.items():
            todo = [s for s in group if s.key not in self.have]
            if todo:
                yield run_id, image_id, todo


def begin_generation(db: Session, study: Study) -> Generation:
    specs = stimulus_plan(study)
    have = stimuli_by_key(db, study.id)
    return Generation(study, specs, have, done=sum(1 for s in specs if s.key in have))


def source_image(db: Session, image_id: int) -> Image:
    image = db.get(Image, image_id)
    if image is None:
        raise ValueError(f"image {image_id} no longer exists")
    return image


def source_pixels(storage: Storage, image: Image, in_channels: int, size: int) -> np.ndarray:
    """The source image as the model sees it (converted and resized the way the training
    library loads data): H x W uint8 for one channel, else H x W x 3."""
    mode = "L" if in_channels == 1 else "RGB"
    return source_array(storage.get_bytes(image.storage_key), mode, (size, size))


def model_label(image: Image, classes: list[str] | None) -> int:
    """The model's class index of an image: by class name when the checkpoint lists them."""
    name = image.dataset_class.name
    if classes and name in classes:
        return classes.index(name)
    return image.dataset_class.index


def encode_stimulus(pixels: np.ndarray) -> bytes:
    """The stored (and served) file of a stimulus's pixels (H x W or H x W x 3 uint8): the
    uncompressed PNG of common.stored_png, so that every stimulus of a study has one length
    and serving it takes the same work whatever its condition."""
    return stored_png(pixels)


def store_stimulus(
    db: Session,
    storage: Storage,
    generation: Generation,
    spec: StimulusSpec,
    png: bytes,
    seed: int,
) -> Stimulus:
    """Write one generated stimulus's PNG (encode_stimulus) under a random name and add its
    row (committed by record_progress, once per source image)."""
    study = generation.study
    key = f"studies/{study.id}/stimuli/{secrets.token_hex(16)}.png"
    storage.put_bytes(key, png)
    row = Stimulus(
        study_id=study.id,
        public_id=public_id(18),
        run_id=spec.run_id,
        source_image_id=spec.image_id,
        epsilon=spec.eps_255 / 255,
        attack=study.config["attack"]["name"],
        seed=seed,
        purpose=spec.purpose,
        storage_key=key,
        sha256=hashlib.sha256(png).hexdigest(),
    )
    db.add(row)
    generation.have[spec.key] = row
    generation.made += 1
    generation.done += 1
    return row


def record_progress(db: Session, generation: Generation) -> float:
    """Commit the stimuli stored so far with the study's progress (0..1); returns it."""
    study = generation.study
    study.progress = generation.done / generation.total
    db.commit()
    return study.progress


# the model's robust accuracy at the study's epsilons: PGD with the study's steps and step
# size, this many random starts (an image counts as robust only if it survives every one)
MODEL_EVAL_RESTARTS = 2


def model_accuracy_epsilons(study: Study) -> list[float]:
    """The epsilons (grey levels) the model's robust accuracy is measured at: the study's grid,
    and 0 (clean accuracy), ascending."""
    return sorted({0.0, *(float(e) for e in study.config["epsilons_255"])})


def model_accuracy_images(study: Study) -> list[int]:
    """The images the model is attacked on: the study's main images, the ones whose answers
    make the human curve."""
    return [int(i) for i in study.config["images"]["main"]]


def has_model_accuracy(study: Study) -> bool:
    """True when the model's accuracy is recorded for every run at every study epsilon (a
    redelivered task does not measure it again)."""
    table = study.config.get("model_accuracy")
    if not isinstance(table, dict):
        return False
    want = {eps_key(e) for e in model_accuracy_epsilons(study)}
    runs = {e.get("run_id"): e for e in table.get("runs", []) if isinstance(e, dict)}
    return all(
        rid in runs and {eps_key(p["epsilon_255"]) for p in runs[rid]["points"]} == want
        for rid in study.config["run_ids"]
    )


def record_model_accuracy(
    db: Session,
    study: Study,
    per_run: dict[int, list[dict[str, float]]],
    *,
    n_images: int,
    steps: int,
    restarts: int,
    alpha_ratio: float,
    quantised: bool,
) -> None:
    """Store each run's robust accuracy at the study's epsilons in the study's config
    ("model_accuracy": the attack's settings, the image count and, per run, one point per
    epsilon with accuracy in [0, 1] and the counts it is made of)."""
    cfg = dict(study.config)
    cfg["model_accuracy"] = {
        "attack": "pgd-linf",
        "steps": steps,
        "restarts": restarts,
        "alpha_ratio": alpha_ratio,
        "quantised": quantised,
        "images": "the study's main images",
        "n_images": n_images,
        "runs": [{"run_id": rid, "points": points} for rid, points in per_run.items()],
    }
    study.config = cfg
    db.commit()


# AutoAttack beside PGD: the original attack (the training library's robustness.autoattack,
# what a run's final evaluation runs) on a stated subset of the main images, so that making
# the stimuli stays cheap on a CPU: the first AUTOATTACK_IMAGES of them (the main pool is a
# random sample of the images, drawn with the study's seed). Where the model resists, each
# epsilon costs Square's 5,000 queries on the images still robust, so the count matters on a
# CPU. The study sets it (autoattack_images; 0 measures nothing); this is the count for a
# study made before it could.
AUTOATTACK_IMAGES = 32
# a QUEST+ ladder has 20-30 levels: AutoAttack runs at this many of them (spread evenly over
# the ladder in log epsilon, its ends included) and 0; a grid this short or shorter, at each
AUTOATTACK_MAX_EPSILONS = 8


def autoattack_epsilons(study: Study) -> list[float]:
    """The epsilons (grey levels) AutoAttack is run at: 0 and the study's positive epsilons,
    at most AUTOATTACK_MAX_EPSILONS of them (spread evenly over the sorted grid)."""
    positive = [e for e in model_accuracy_epsilons(study) if e > 0]
    if len(positive) > AUTOATTACK_MAX_EPSILONS:
        picks = np.linspace(0, len(positive) - 1, AUTOATTACK_MAX_EPSILONS).round().astype(int)
        positive = [positive[i] for i in sorted(set(picks.tolist()))]
    return [0.0, *positive]


def autoattack_images(study: Study) -> list[int]:
    """The images AutoAttack is run on: the first `autoattack_images` (the study's setting)
    of the study's main images."""
    count = study.config.get("autoattack_images")
    return model_accuracy_images(study)[: AUTOATTACK_IMAGES if count is None else int(count)]


def model_autoattack(study: Study) -> dict[str, Any] | None:
    """What record_model_autoattack stored, or None (a study made before it was measured)."""
    table = study.config.get("model_autoattack")
    return table if isinstance(table, dict) else None


def has_model_autoattack(study: Study) -> bool:
    """True when AutoAttack's accuracy is recorded for every run at every epsilon of
    autoattack_epsilons."""
    table = model_autoattack(study)
    if table is None:
        return False
    want = {eps_key(e) for e in autoattack_epsilons(study)}
    runs = {e.get("run_id"): e for e in table.get("runs", []) if isinstance(e, dict)}
    return all(
        rid in runs and {eps_key(p["epsilon_255"]) for p in runs[rid]["points"]} == want
        for rid in study.config["run_ids"]
    )


def record_model_autoattack(
    db: Session,
    study: Study,
    per_run: dict[int, dict[str, Any]],
    *,
    settings: dict[str, Any],
    n_images: int,
) -> None:
    """Store each run's AutoAttack accuracy at the study's epsilons in the study's config
    ("model_autoattack": the attack as the library reports it, the images, and per run one
    point per epsilon with accuracy in [0, 1], its counts and PGD's accuracy on the same
    images, plus AutoAttack's warnings)."""
    cfg = dict(study.config)
    cfg["model_autoattack"] = {
        **settings,
        "images": f"the first {n_images} of the study's main images",
        "n_images": n_images,
        "worst_case": "an image counts as robust at an epsilon only if no attack at that "
        "epsilon or a smaller one changed the model's answer",
        "runs": [{"run_id": rid, **entry} for rid, entry in per_run.items()],
    }
    study.config = cfg
    db.commit()


def _shape(png: bytes) -> tuple[int, int, int]:
    """(width, height, channels as served) of a stimulus PNG, from its header."""
    with PILImage.open(io.BytesIO(png)) as im:
        return im.width, im.height, 1 if im.mode == "L" else 3


def served_config(db: Session, storage: Storage, study: Study, image_size: int) -> dict[str, Any]:
    """What a finished generation adds to the study's config (backend/services/
    study_lifecycle.finish_generation), after checking that every stimulus has one size and
    mode (so that every one is served as the same number of bytes): that length and the
    image size."""
    shapes = {
        _shape(storage.get_bytes(s.storage_key)) for s in stimuli_by_key(db, study.id).values()
    }
    if len(shapes) != 1:
        raise ValueError(f"the stimuli have different sizes or modes: {sorted(shapes)}")
    width, height, channels = shapes.pop()
    return {
        "stimulus_bytes": stored_png_size(width, height, channels),
        "image_size": [image_size, image_size],
    }
