"""Evaluations every run gets (docs/training.md, "Evaluation"): clean accuracy, PGD over an
epsilon grid with restarts, the original AutoAttack at the training eps, the gradient-masking
checks, and agreement of the model's salience with human masks. The inequality tests live in
inequality.py; the attacks behind the robust numbers in robustness.py.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from runconfig import cost

from .attacks import eval_mode
from .checkpoint import load_checkpoint, load_model_from_checkpoint
from .data import DataBundle, TensorSet, load_data
from .inequality import common_correct_subset, inequality_tests
from .robustness import LARGE_EPS, OnPgdBatch, autoattack, gradient_masking_checks, pgd_robust
from .salience import agreement_with_mask, salience_map

_logger = logging.getLogger(__name__)

# Raised when what evaluate_model measures changes, so finished runs are evaluated again.
EVALUATION_VERSION = 2


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
    restarts: int = 1,
    alpha: float | None = None,
    seed: int = 0,
    device: str = "cpu",
    batch_size: int = 256,
    on_batch: OnPgdBatch | None = None,
) -> float:
    """Share of images classified correctly clean and after every one of `restarts` L-inf PGD
    attacks (random start, alpha = eps / 4 unless given)."""
    flags = pgd_robust(
        model,
        ts,
        eps,
        steps=steps,
        restarts=restarts,
        alpha=alpha,
        seed=seed,
        device=device,
        batch_size=batch_size,
        on_batch=on_batch,
    )
    return int(flags.sum()) / len(flags) if len(flags) else 0.0


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


def evaluation_settings(
    eps_grid: Sequence[float],
    *,
    subset: int,
    steps: int,
    restarts: int,
    autoattack_eps: float | None,
    autoattack_n: int,
    seed: int,
) -> dict[str, Any]:
    """What a final evaluation depends on besides the model and data (kept with its result,
    so that a finished run is evaluated again only when one of these changed)."""
    return {
        "eps_grid": [float(e) for e in eps_grid],
        "subset": subset,
        "steps": steps,
        "restarts": restarts,
        "autoattack_eps": autoattack_eps,
        "autoattack_n": autoattack_n if autoattack_eps is not None else 0,
        "seed": seed,
        "version": EVALUATION_VERSION,
    }


def _eps_key(e: float) -> str:
    return f"{e:.6g}"


# on_progress(point): the final evaluation's progress (EvaluationProgress.point)
OnProgress = Callable[[dict[str, Any]], None]


class EvaluationProgress:
    """The final evaluation's stages (runconfig.cost: what each is called, its images and
    its work units) and how far it has got. Calls on_progress(point) when a stage begins
    and ends, and within one at most every `every_s` seconds. A stage whose size was an
    estimate (how many images stay robust) is sized again when it begins."""

    def __init__(
        self, stages: list[cost.Stage], on_progress: OnProgress | None, every_s: float = 1.0
    ) -> None:
        self.stages = list(stages)
        self.on_progress = on_progress
        self.every_s = every_s
        self.finished: set[str] = set()
        self.current: int | None = None
        self.share = 0.0  # of the current stage
        self.images_done = 0
        self._last = 0.0

    def _at(self, key: str) -> int:
        return next(i for i, s in enumerate(self.stages) if s.key == key)

    def has(self, key: str) -> bool:
        return any(s.key == key for s in self.stages)

    def begin(self, key: str, images: int | None = None, units: float | None = None) -> None:
        i = self._at(key)
        if images is not None and units is not None:
            old = self.stages[i]
            self.stages[i] = cost.Stage(old.key, old.label, images, units)
        self.current, self.share, self.images_done = i, 0.0, 0
        self._report(force=True)

    def advance(self, images_done: int, share: float) -> None:
        self.images_done, self.share = images_done, min(1.0, max(0.0, share))
        self._report()

    def end(self) -> None:
        if self.current is not None:
            self.finished.add(self.stages[self.current].key)
            self.images_done, self.share = self.stages[self.current].images, 1.0
            self._report(force=True)
            self.current = None

    def skip(self, key: str) -> None:
        """A stage that was not needed (nothing left to attack): done, with no work."""
        i = self._at(key)
        self.stages[i] = cost.Stage(key, self.stages[i].label, 0, 0.0)
        self.finished.add(key)

    def point(self) -> dict[str, Any]:
        done = sum(s.units for s in self.stages if s.key in self.finished)
        stage = self.stages[self.current] if self.current is not None else None
        if stage is not None and stage.key not in self.finished:
            done += self.share * stage.units
        shown = stage or self.stages[-1]
        return {
            "stage": shown.key,
            "label": shown.label,
            "stage_index": (self.current if self.current is not None else len(self.stages) - 1) + 1,
            "stages": len(self.stages),
            "images_done": self.images_done,
            "images": shown.images,
            "units_done": done,
            "units_total": sum(s.units for s in self.stages),
        }

    def _report(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.on_progress is None or (not force and now - self._last < self.every_s):
            return
        self._last = now
        self.on_progress(self.point())


def evaluation_stages(
    data: DataBundle,
    eps_grid: Sequence[float],
    *,
    subset: int,
    steps: int,
    restarts: int,
    autoattack_eps: float | None,
    autoattack_n: int,
    survival: float = cost.DEFAULT_SURVIVAL,
) -> list[cost.Stage]:
    """evaluate_model's stages on this data (runconfig.cost.evaluation_stages)."""
    return cost.evaluation_stages(
        n_test=len(data.test),
        n_subset=len(data.test.spread_subset(subset)),
        eps_grid=eps_grid,
        steps=steps,
        restarts=restarts,
        autoattack_n=autoattack_n,
        autoattack_eps=autoattack_eps,
        n_classes=data.num_classes,
        survival=survival,
    )


def evaluate_model(
    model: nn.Module,
    data: DataBundle,
    eps_grid: Sequence[float],
    *,
    subset: int = 500,
    steps: int = 20,
    restarts: int = 1,
    autoattack_eps: float | None = None,
    autoattack_n: int = 0,
    inequality_n: int = 0,
    seed: int = 0,
    device: str = "cpu",
    on_progress: OnProgress | None = None,
    survival: float = cost.DEFAULT_SURVIVAL,
) -> dict[str, Any]:
    """The final evaluation of a model.

    - clean accuracy on the whole test set;
    - PGD-`steps` (alpha eps/4, random start, worst case over `restarts`) per eps of the grid
      on `subset` test images spread over the classes (TensorSet.spread_subset; their clean
      accuracy is `subset_clean_accuracy`), and at LARGE_EPS for the checks;
    - AutoAttack (standard, L-inf) at `autoattack_eps` on `autoattack_n` spread test images,
      with PGD on the same images beside it;
    - the gradient-masking checks on all of that ("gradient_masking");
    - the inequality tests on up to `inequality_n` correctly classified images (optional);
    - agreement of the model's Grad-CAM with the human masks.

    on_progress(point): how far it has got (EvaluationProgress.point: the stage, its images,
    the work units done and in all), the stages sized at first with `survival`, the share of
    images guessed to stay robust.
    """
    test = data.test
    sub = test.spread_subset(subset)
    stages = evaluation_stages(
        data,
        eps_grid,
        subset=subset,
        steps=steps,
        restarts=restarts,
        autoattack_eps=autoattack_eps,
        autoattack_n=autoattack_n,
        survival=survival,
    )
    progress = EvaluationProgress(stages, on_progress)
    progress.begin("clean")
    clean = clean_accuracy(model, test, device)
    progress.end()
    out: dict[str, Any] = {
        "clean_accuracy": clean,
        "n_test": len(test),
        # chance is 1 / num_classes: the pages flag a model that is no better
        "num_classes": data.num_classes,
        "settings": evaluation_settings(
            eps_grid,
            subset=subset,
            steps=steps,
            restarts=restarts,
            autoattack_eps=autoattack_eps,
            autoattack_n=autoattack_n,
            seed=seed,
        ),
    }
    out["robust_subset"] = len(sub)
    if progress.has("subset_clean"):
        progress.begin("subset_clean")
        out["subset_clean_accuracy"] = clean_accuracy(model, sub, device)
        progress.end()
    else:
        out["subset_clean_accuracy"] = out["clean_accuracy"]
    pgd = {"attack": "PGD", "steps": steps, "restarts": restarts, "alpha": "eps/4"}
    out["pgd"] = {**pgd, "random_start": True, "n": len(sub)}
    out["pgd_steps"], out["pgd_restarts"] = steps, restarts

    def pgd_on(ts: TensorSet, e: float, stage: str) -> float:
        progress.begin(stage)
        accuracy = robust_accuracy(
            model,
            ts,
            e,
            steps=steps,
            restarts=restarts,
            seed=seed,
            device=device,
            on_batch=progress.advance,
        )
        progress.end()
        return accuracy

    _logger.info(
        "final evaluation: PGD-%d x %d restart(s) on %d images at eps %s and %g",
        steps,
        restarts,
        len(sub),
        ", ".join(f"{e * 255:.4g}/255" for e in eps_grid),
        LARGE_EPS,
    )
    out["pgd_accuracy"] = {_eps_key(e): pgd_on(sub, e, f"pgd:{_eps_key(e)}") for e in eps_grid}
    large = pgd_on(sub, LARGE_EPS, "large_eps")
    out["large_eps"] = {**pgd, "eps": LARGE_EPS, "n": len(sub), "accuracy": large}
    aa_report = None
    pgd_on_aa = None
    if autoattack_n and autoattack_eps is not None:
        aa_set = test.spread_subset(autoattack_n)
        aa_report = autoattack(
            model,
            aa_set,
            autoattack_eps,
            data.num_classes,
            seed=seed,
            device=device,
            on_event=_autoattack_progress(progress, len(aa_set), data.num_classes),
        )
        aa_report.pop("flags")
        for stage in progress.stages:  # attacks not run: no image was left for them
            if stage.key.startswith("aa:") and stage.key not in progress.finished:
                progress.skip(stage.key)
        pgd_on_aa = pgd_on(aa_set, autoattack_eps, "aa_pgd")
        aa_report["pgd"] = {**pgd, "eps": autoattack_eps, "n": len(aa_set), "accuracy": pgd_on_aa}
        out["autoattack"] = aa_report
    checks = gradient_masking_checks(
        {
            0.0: out["subset_clean_accuracy"],
            **{float(e): out["pgd_accuracy"][_eps_key(e)] for e in eps_grid},
        },
        len(sub),
        large_eps=(LARGE_EPS, large),
        autoattack_report=aa_report,
        pgd_on_autoattack_images=pgd_on_aa,
    )
    failed = [c["name"] for c in checks if not c["passed"]]
    out["gradient_masking"] = {"passed": not failed, "failed": failed, "checks": checks}
    if failed:
        _logger.warning("gradient-masking checks failed: %s", ", ".join(failed))
    if inequality_n:
        idx = common_correct_subset([model], test, inequality_n, device)
        x, _, _, y = test.batch(idx, device)
        out["inequality"] = {
            **inequality_tests(model, x, y, seed=seed),
            "common_set": False,  # this model's own correct images: not comparable across runs
        }
    agreement = salience_agreement(model, test, "gradcam", device)
    if agreement is not None:
        out["salience_agreement"] = agreement
    return out


def _autoattack_progress(
    progress: EvaluationProgress, n: int, n_classes: int
) -> Callable[[str, str, float], None]:
    """AutoAttack's logged progress as the evaluation's stages: each attack sized, when it
    begins, by the images still robust after the one before it."""
    robust = {"share": 1.0}

    def on_event(event: str, attack: str, value: float) -> None:
        key = f"aa:{attack}"
        if event == "initial":
            robust["share"] = value
        elif event == "start" and progress.has(key):
            images = math.ceil(round(robust["share"] * n, 6))
            progress.begin(key, images, cost.autoattack_units(attack, images, n_classes))
        elif event == "batch" and progress.current is not None:
            stage = progress.stages[progress.current]
            progress.advance(math.floor(stage.images * value), value)
        elif event == "end":
            robust["share"] = value
            if progress.current is not None and progress.stages[progress.current].key == key:
                progress.end()

    return on_event


def evaluate_checkpoint(
    path: str | Path,
    data_dir: str | Path | DataBundle | None,
    eps_grid: Sequence[float] = (1 / 255, 2 / 255, 4 / 255, 8 / 255),
    *,
    subset: int = 500,
    steps: int = 20,
    restarts: int = 1,
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
        steps=steps,
        restarts=restarts,
        autoattack_eps=autoattack_eps,
        autoattack_n=autoattack_n,
        inequality_n=inequality_n,
        seed=cfg.get("seed", 0),
        device=device,
    )
    result["checkpoint"] = str(path)
    return result
