"""What a run costs, from its configuration alone, in one unit: a forward and a backward pass
of one image through the model (a forward pass alone counts FORWARD of it).

The app weighs a run's training against its final evaluation with it (the progress bar
reaches its end when the evaluation ends, not when training does) and says how long the
evaluation will take before it has measured it: the evaluation's units at the rate training
measured. The library reports its evaluation's progress in the same units
(worker/sipat/evaluate.py), stage by stage, in the order it runs them.

A model, not a measurement: each PGD step, APGD or FAB iteration counts one pass per image
attacked, a Square query a forward pass; restarts and the attacks after the first are run on
the images still robust, a share guessed from the last per-epoch robust accuracy
(`survival`) until the evaluation knows it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from runconfig.settings import grey_levels

if TYPE_CHECKING:
    from runconfig.train_config import TrainConfig

FORWARD = 1 / 3  # a forward pass against a forward and backward one
# AutoAttack's standard version as worker/sipat/robustness.py runs it (a test holds the two
# equal): iterations of APGD-CE, APGD-T and FAB-T, Square's queries, the target classes
AA_ITERATIONS = 100
AA_SQUARE_QUERIES = 5000
AA_MAX_TARGETS = 9
MIN_CLASSES_APGD_T = 4
LARGE_EPS = 0.5  # the gradient-masking check's very large budget (pixel units)
# the share of images guessed to stay robust before anything was measured
DEFAULT_SURVIVAL = 0.5
AA_ATTACK_LABELS = {"apgd-ce": "APGD-CE", "apgd-t": "APGD-T", "fab-t": "FAB-T", "square": "Square"}


def train_passes(method: str, steps: int) -> float:
    """Passes per training image per batch: the attack's steps and the update itself (IGD
    adds the teacher's input gradient and a double backward; the fast single-step mode
    makes one attack step)."""
    if method == "standard":
        return 1.0
    if method == "fast_sip_at":
        return 2.0
    return steps + 1.0 + (2.0 if method == "igd" else 0.0)


def epoch_check_units(n_test: int, n_check: int, epoch_eval_steps: int) -> float:
    """The check after every epoch: clean accuracy on the test images, PGD on n_check."""
    return n_test * FORWARD + n_check * epoch_eval_steps


def training_units(
    *, epochs: int, n_train: int, passes: float, n_test: int, n_check: int, epoch_eval_steps: int
) -> float:
    """Every epoch's batches and its check."""
    return epochs * (n_train * passes + epoch_check_units(n_test, n_check, epoch_eval_steps))


@dataclass(frozen=True)
class Stage:
    """One step of the final evaluation: what it is called on the page, the images it
    works on and its units (an estimate where it depends on how many images stay robust)."""

    key: str
    label: str
    images: int
    units: float


def eps_label(eps: float) -> str:
    return f"ε {grey_levels(eps)}"


def pgd_units(images: int, steps: int, restarts: int, survival: float) -> float:
    """PGD-steps with restarts: the first on every image, the others on those still robust."""
    return images * steps * (1 + max(0, restarts - 1) * survival)


def autoattack_units(attack: str, images: int, n_classes: int) -> float:
    """One attack of AutoAttack's standard version on `images` images."""
    targets = max(1, min(AA_MAX_TARGETS, n_classes - 1))
    if attack == "apgd-ce":
        return images * AA_ITERATIONS
    if attack in ("apgd-t", "fab-t"):
        return images * AA_ITERATIONS * targets
    return images * AA_SQUARE_QUERIES * FORWARD  # square


def autoattack_attacks(n_classes: int) -> list[str]:
    """The attacks the standard version runs (APGD-T needs at least 4 classes)."""
    return [a for a in AA_ATTACK_LABELS if a != "apgd-t" or n_classes >= MIN_CLASSES_APGD_T]


def evaluation_stages(
    *,
    n_test: int,
    n_subset: int,
    eps_grid: Sequence[float],
    steps: int,
    restarts: int,
    autoattack_n: int,
    autoattack_eps: float | None,
    n_classes: int,
    survival: float = DEFAULT_SURVIVAL,
) -> list[Stage]:
    """The final evaluation's stages in the order evaluate_model runs them."""
    survival = min(1.0, max(0.0, survival))
    n_subset = min(n_subset, n_test)
    stages = [Stage("clean", "clean accuracy", n_test, n_test * FORWARD)]
    if n_subset < n_test:
        stages.append(
            Stage("subset_clean", "clean accuracy of the PGD images", n_subset, n_subset * FORWARD)
        )
    pgd = f"PGD-{steps}" + (f" × {restarts} restarts" if restarts > 1 else "")
    for eps in eps_grid:
        units = pgd_units(n_subset, steps, restarts, survival)
        stages.append(Stage(f"pgd:{eps:.6g}", f"{pgd} at {eps_label(eps)}", n_subset, units))
    # at a very large budget the first restart leaves next to nothing for the others
    stages.append(
        Stage("large_eps", f"{pgd} at {eps_label(LARGE_EPS)}", n_subset, n_subset * steps)
    )
    n_aa = min(autoattack_n, n_test)
    if n_aa and autoattack_eps is not None:
        for i, attack in enumerate(autoattack_attacks(n_classes)):
            images = n_aa if i == 0 else math.ceil(n_aa * survival)
            stages.append(
                Stage(
                    f"aa:{attack}",
                    f"AutoAttack {AA_ATTACK_LABELS[attack]} at {eps_label(autoattack_eps)}",
                    images,
                    autoattack_units(attack, images, n_classes),
                )
            )
        stages.append(
            Stage(
                "aa_pgd",
                f"{pgd} on AutoAttack's images",
                n_aa,
                pgd_units(n_aa, steps, restarts, survival),
            )
        )
    return stages


def run_units(
    cfg: TrainConfig, *, n_train: int, n_test: int, n_classes: int, autoattack_n: int
) -> tuple[float, float]:
    """(training, final evaluation) units of a run of `cfg` on data of these sizes, before
    anything was measured (the app's estimate of a queued run's length)."""
    n_check = min(cfg.eval_subset, n_test)
    training = training_units(
        epochs=cfg.epochs,
        n_train=n_train,
        passes=train_passes(cfg.method, cfg.steps),
        n_test=n_test,
        n_check=n_check,
        epoch_eval_steps=cfg.epoch_eval_steps,
    )
    stages = evaluation_stages(
        n_test=n_test,
        n_subset=n_check,
        eps_grid=cfg.eval_eps,
        steps=cfg.eval_steps,
        restarts=cfg.eval_restarts,
        autoattack_n=autoattack_n,
        autoattack_eps=cfg.eps,
        n_classes=n_classes,
    )
    return training, sum(s.units for s in stages)
