"""Making a label study's stimuli (issue 26), called by worker.study_tasks.generate_stimuli
for a study of design "label": load - call - record.

The clean images (main pool, practice, catch) are stored as they are; catch images the first
run's model gets wrong are dropped (and counted). Then, per run and epsilon of the grid, the
training library's AutoAttack (worker.sipat.robustness.autoattack_examples: the original
attack, standard version, L-inf) attacks the main pool with the run's final model; each
adversarial image is quantised to 8 bits within the budget (worker.sipat.stimuli.
quantise_batch) and kept only if the model still gets it wrong after quantisation. Every pool
image's outcome (wrong clean, robust, fooled, dropped) is recorded per run and epsilon by the
studies service (backend.services.studies.labels). Idempotent per run: a run whose outcomes
are recorded is not attacked again, a stimulus whose row exists is not stored again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from sqlalchemy.orm import Session

from backend.core.storage import Storage
from backend.models import Study
from backend.services.studies import labels, stimuli
from backend.services.studies.common import StimulusKey, eps_key, stimuli_by_key


def _predict(model: torch.nn.Module, x: torch.Tensor, device: str) -> torch.Tensor:
    from worker.sipat.attacks import eval_mode

    with torch.no_grad(), eval_mode(model):
        out: torch.Tensor = model(x.to(device)).argmax(1).cpu()
    return out


def make_label_stimuli(
    db: Session,
    storage: Storage,
    study: Study,
    models: Any,
    shape: tuple[int, int],
    on_progress: Callable[[float], None] | None = None,
) -> int:
    """Every missing stimulus and outcome of a label study; returns how many stimuli were
    stored now."""
    from worker.sipat.robustness import autoattack_examples
    from worker.sipat.stimuli import quantise_batch, to_chw, to_hwc

    size, channels = shape
    cfg = study.config
    runs = [int(r) for r in cfg["run_ids"]]
    grid = [float(e) for e in cfg["epsilons_255"]]
    seed = int(cfg.get("seed", 0))
    total = 1 + len(runs) * len(grid)
    done = 0
    made = 0
    have = stimuli_by_key(db, study.id)

    def pixels(image_id: int) -> np.ndarray:
        image = stimuli.source_image(db, image_id)
        return to_chw(stimuli.source_pixels(storage, image, channels, size))

    def progress() -> None:
        fraction = labels.record_label_progress(db, study, done / total)
        if on_progress is not None:
            on_progress(fraction)

    first_model, first_spec = models.get(runs[0])
    if "catch_dropped" not in cfg:
        catch = [int(i) for i in cfg["images"]["catch"]]
        wrong = []
        for img in catch:
            label = stimuli.model_label(stimuli.source_image(db, img), first_spec.get("classes"))
            x = torch.from_numpy(pixels(img).copy()).float().div(255)[None]
            if int(_predict(first_model, x, models.device)[0]) != label:
                wrong.append(img)
        labels.record_dropped_catch(db, study, wrong)
        cfg = study.config
    clean = [("main", i) for i in cfg["images"]["main"]]
    clean += [("practice", i) for i in cfg["images"]["practice"]]
    clean += [("catch", i) for i in cfg["images"]["catch"]]
    for purpose, img in clean:
        key: StimulusKey = (purpose, None, int(img), 0.0)
        if key not in have:
            png = stimuli.encode_stimulus(to_hwc(pixels(int(img))))
            have[key] = labels.store_label_stimulus(
                db, storage, study, key, png, attack="none", seed=0
            )
            made += 1
    done += 1
    progress()

    pool = [int(i) for i in cfg["images"]["main"]]
    src = torch.from_numpy(np.stack([pixels(i) for i in pool]))
    x = src.float().div(255)
    recorded = {int(r["run_id"]) for r in (study.config.get("label_model") or {}).get("runs", [])}
    for rid in runs:
        if rid in recorded:
            done += len(grid)
            progress()
            continue
        model, spec = models.get(rid)
        y = torch.tensor(
            [stimuli.model_label(stimuli.source_image(db, i), spec.get("classes")) for i in pool]
        )
        with torch.no_grad():
            n_classes = int(model.eval()(x[:1].to(models.device)).shape[1])
        clean_right = _predict(model, x, models.device) == y
        points = []
        for e in grid:
            x_adv = autoattack_examples(
                model, x, y, e / 255, n_classes, seed=seed + rid, device=models.device
            )
            adv_right = _predict(model, x_adv, models.device) == y
            q = quantise_batch(x_adv, src, e)
            q_right = _predict(model, q, models.device) == y
            outcomes: dict[str, str] = {}
            for k, img in enumerate(pool):
                if not clean_right[k]:
                    outcomes[str(img)] = "wrong"
                elif adv_right[k]:
                    outcomes[str(img)] = "robust"
                elif q_right[k]:
                    outcomes[str(img)] = "dropped"
                else:
                    outcomes[str(img)] = "fooled"
                    key = ("main", rid, img, eps_key(e))
                    if key not in have:
                        chw = torch.round(q[k] * 255).to(torch.uint8).numpy()
                        png = stimuli.encode_stimulus(to_hwc(chw))
                        have[key] = labels.store_label_stimulus(
                            db, storage, study, key, png, attack="autoattack", seed=seed + rid
                        )
                        made += 1
            points.append({"epsilon_255": e, "outcomes": outcomes})
            done += 1
            progress()
        labels.record_model_outcomes(db, study, rid, points)
    return made
