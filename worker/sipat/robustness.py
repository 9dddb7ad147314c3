"""Robust accuracy as the field reports it (docs/training.md, "Evaluation").

- `pgd_robust`: L-inf PGD with random start and R restarts; an image counts as robust only
  if it is classified correctly clean and after every restart (worst case per image).
- `autoattack`: the original AutoAttack (Croce and Hein 2020) from the `pyautoattack`
  package, version "standard", L-inf: APGD-CE, APGD-T, FAB-T, Square, each run on the images
  still robust. Its own per-attack accuracies and warnings are kept as it reports them.
- `gradient_masking_checks`: the checks of Carlini et al. 2019 and Athalye et al. 2018
  that a number from a gradient attack can be trusted.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from importlib import metadata
from typing import Any

import torch
from torch import Tensor, nn

from .attacks import eval_mode, pgd_attack
from .data import TensorSet

_logger = logging.getLogger(__name__)

# pgd_robust's on_batch(images done, share of the work done), after each batch
OnPgdBatch = Callable[[int, float], None]
# autoattack's on_event(event, attack, value): "initial" (value: the clean accuracy), "start"
# (an attack begins), "batch" (value: the share of its batches done), "end" (value: the robust
# accuracy after it), "stop" (no robust image left: the remaining attacks are skipped)
OnAutoAttackEvent = Callable[[str, str, float], None]

AA_ATTACKS = ("apgd-ce", "apgd-t", "fab-t", "square")  # the standard version, in its order
AA_ITERATIONS = 100  # APGD-CE, APGD-T and FAB-T (the package's standard version)
AA_SQUARE_QUERIES = 5000
LARGE_EPS = 0.5  # "a very large budget": half the pixel range (pixel units)
LARGE_EPS_MAX_ACCURACY = 0.05  # accuracy at LARGE_EPS above this: gradients do not lead anywhere
# A check compares two accuracies on the same images; it tolerates the larger of one image
# and this share, so that one image's random start does not raise an alarm.
CHECK_TOLERANCE = 0.01


def _batches(n: int, batch_size: int) -> Iterator[Tensor]:
    for i in range(0, n, batch_size):
        yield torch.arange(i, min(i + batch_size, n))


@torch.no_grad()
def _correct(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    with eval_mode(model):
        return model(x).argmax(1) == y


def pgd_robust(
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
) -> Tensor:
    """Per-image robust flags (bool, CPU) under L-inf PGD-`steps` with `restarts` random starts.

    alpha = eps / 4 unless given. Restart r > 0 attacks only the images still robust, so the
    flags are the worst case over the restarts. eps = 0 gives clean correctness.
    on_batch(images done, share done): after each batch of images, every restart made.
    """
    alpha = eps / 4 if alpha is None else alpha
    gen = torch.Generator(device=device).manual_seed(seed)
    flags = []
    n, done = len(ts), 0
    for idx in _batches(n, batch_size):
        x, _, _, y = ts.batch(idx, device)
        robust = _correct(model, x, y)
        if eps > 0:
            for r in range(restarts):
                live = torch.ones_like(robust) if r == 0 else robust.clone()
                if not live.any():
                    break
                x_adv = pgd_attack(model, x[live], y[live], eps, alpha, steps, generator=gen)
                robust[live] &= _correct(model, x_adv, y[live])
        flags.append(robust.cpu())
        done += len(idx)
        if on_batch is not None:
            on_batch(done, done / n)
    return torch.cat(flags) if flags else torch.zeros(0, dtype=torch.bool)


class _AutoAttackLog(logging.Handler):
    """Collects what AutoAttack logs: its accuracy after each attack and its warnings."""

    _AFTER = re.compile(r"robust accuracy after (\S+): ([0-9.]+)%")
    _INITIAL = re.compile(r"initial accuracy: ([0-9.]+)%")
    _BATCH = re.compile(r"^(\S+) - (\d+)/(\d+) - ")

    def __init__(self, on_event: OnAutoAttackEvent | None = None) -> None:
        super().__init__(logging.DEBUG)
        self.after: dict[str, float] = {}
        self.initial: float | None = None
        self.warnings: list[str] = []
        self.on_event = on_event or (lambda _event, _attack, _value: None)

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.levelno >= logging.WARNING:
            self.warnings.append(text)
        elif m := self._AFTER.search(text):
            self.after[m.group(1).lower()] = float(m.group(2)) / 100
            _logger.info("AutoAttack: %s", text)  # progress, for the run's log
            self.on_event("end", m.group(1).lower(), self.after[m.group(1).lower()])
        elif m := self._INITIAL.search(text):
            self.initial = float(m.group(1)) / 100
            self.on_event("initial", "", self.initial)
        elif m := self._BATCH.search(text):
            self.on_event("batch", m.group(1).lower(), int(m.group(2)) / int(m.group(3)))
        elif text.startswith("running "):
            _logger.info("AutoAttack: %s", text)
            self.on_event("start", text.removeprefix("running ").strip().lower(), 0.0)
        elif text.startswith("no robust datapoints left"):
            self.on_event("stop", "", 0.0)


@contextmanager
def _captured_autoattack_log(
    on_event: OnAutoAttackEvent | None = None,
) -> Iterator[_AutoAttackLog]:
    log = logging.getLogger("auto-attack")
    handler = _AutoAttackLog(on_event)
    saved = log.level, log.propagate
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    log.propagate = False  # its debug lines are ours to report, not the root logger's
    try:
        yield handler
    finally:
        log.removeHandler(handler)
        log.setLevel(saved[0])
        log.propagate = saved[1]


def _as_share(reported: float, n: int) -> float:
    """AutoAttack logs percentages with two decimals; back to an exact count of n images."""
    return round(reported * n) / n if n else 0.0


def package_version() -> str:
    return f"pyautoattack {metadata.version('pyautoattack')}"


# APGD-T's targeted DLR loss reads the 3rd and 4th largest logits, and the package allows no
# other loss for it: with 2 or 3 classes the standard version runs without APGD-T.
MIN_CLASSES_APGD_T = 4


def attacks_for(n_classes: int) -> list[str]:
    return [a for a in AA_ATTACKS if a != "apgd-t" or n_classes >= MIN_CLASSES_APGD_T]


def build_autoattack(model: nn.Module, eps: float, n_classes: int, *, seed: int, device: str):
    """The package's AutoAttack, standard version, L-inf, with APGD-T's and FAB-T's target
    classes at 9, or C - 1 when the data has fewer than 10 classes (attacks_for: no APGD-T
    below 4 classes)."""
    from pyautoattack import AutoAttack

    aa = AutoAttack(model, norm="Linf", eps=eps, version="standard", seed=seed, device=device)
    targets = max(1, min(9, n_classes - 1))
    aa.apgd_targeted.n_target_classes = targets
    aa.fab.n_target_classes = targets
    aa.attacks_to_run = attacks_for(n_classes)
    return aa


def autoattack(
    model: nn.Module,
    ts: TensorSet,
    eps: float,
    n_classes: int,
    *,
    seed: int = 0,
    device: str = "cpu",
    batch_size: int = 250,
    on_event: OnAutoAttackEvent | None = None,
) -> dict[str, Any]:
    """AutoAttack (standard, L-inf) on every image of `ts`; a report with its accuracy after
    each attack as the package reports it, its warnings, and the per-image robust flags.
    on_event: its progress as the package logs it (OnAutoAttackEvent).

    The caller's global torch RNG state is left as it was (the package reseeds it).
    """
    # contiguous: the package's gradient check views its input gradient as B x -1
    x = (
        torch.cat([ts.batch(i)[0] for i in _batches(len(ts), 1024)]).contiguous()
        if len(ts)
        else None
    )
    y = ts.labels.clone()
    n = len(ts)
    targets = max(1, min(9, n_classes - 1))
    report: dict[str, Any] = {
        "attack": "AutoAttack",
        "version": "standard",
        "norm": "Linf",
        "package": package_version(),
        "eps": float(eps),
        "n": n,
        "seed": seed,
        "attacks": attacks_for(n_classes),
        "iterations": AA_ITERATIONS,
        "target_classes": targets,
        "notes": []
        if n_classes >= MIN_CLASSES_APGD_T
        else [
            f"APGD-T was not run: its targeted DLR loss needs at least {MIN_CLASSES_APGD_T} "
            f"classes and this data has {n_classes}"
        ],
        "square_queries": AA_SQUARE_QUERIES,
    }
    if x is None:
        return {**report, "clean": 0.0, "after": {}, "accuracy": 0.0, "warnings": [], "flags": []}
    _logger.info(
        "AutoAttack (standard, L-inf) at eps %.4g/255 on %d images: %s",
        eps * 255,
        n,
        ", ".join(attacks_for(n_classes)),
    )
    started = time.perf_counter()
    cuda = [torch.device(device).index or 0] if str(device).startswith("cuda") else []
    # the package's model exactly as a user hands it over: in eval mode, native BatchNorm
    plain = eval_mode(model, affine_batchnorm=False)
    with plain, torch.random.fork_rng(devices=cuda), _captured_autoattack_log(on_event) as log:
        aa = build_autoattack(model, eps, n_classes, seed=seed, device=device)
        x_adv, _ = aa.run_standard_evaluation(x, y, batch_size=batch_size)
    seconds = time.perf_counter() - started
    # the final flags from the adversarial images it returned (the package's own last number)
    flags = torch.cat(
        [_correct(model, x_adv[i].to(device), y[i].to(device)).cpu() for i in _batches(n, 1024)]
    )
    clean = _as_share(log.initial, n) if log.initial is not None else float("nan")
    after: dict[str, float] = {}
    last = clean
    for name in attacks_for(n_classes):  # one skipped because none was left keeps the last
        last = _as_share(log.after[name], n) if name in log.after else last
        after[name] = last
    accuracy = int(flags.sum()) / n
    if after and abs(after["square"] - accuracy) > 0.5 / n:
        raise RuntimeError(
            f"AutoAttack reported {after['square']:.4f} but its images score {accuracy:.4f}"
        )
    for w in log.warnings:
        _logger.warning("AutoAttack: %s", w)
    return {
        **report,
        "clean": clean,
        "after": after,
        "accuracy": accuracy,
        "warnings": log.warnings,
        "seconds": round(seconds, 3),
        "flags": flags,
    }


def autoattack_examples(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    n_classes: int,
    *,
    seed: int = 0,
    device: str = "cpu",
    batch_size: int = 250,
) -> Tensor:
    """The adversarial images of the original AutoAttack (standard, L-inf, the same package
    and settings as `autoattack`) for images x (B x C x H x W in [0, 1]) with labels y: where
    no attack succeeded, the clean image. The caller's torch RNG state is left as it was."""
    if len(x) == 0:
        return x.clone()
    cuda = [torch.device(device).index or 0] if str(device).startswith("cuda") else []
    plain = eval_mode(model, affine_batchnorm=False)
    with plain, torch.random.fork_rng(devices=cuda), _captured_autoattack_log(None):
        aa = build_autoattack(model, eps, n_classes, seed=seed, device=device)
        x_adv, _ = aa.run_standard_evaluation(x.contiguous(), y.clone(), batch_size=batch_size)
    return x_adv.detach().cpu()


def _tolerance(n: int) -> float:
    return max(CHECK_TOLERANCE, 1 / n) if n else CHECK_TOLERANCE


def _check(name: str, passed: bool, detail: str) -> dict[str, Any]:
    return {"name": name, "passed": bool(passed), "detail": detail}


def gradient_masking_checks(
    pgd_by_eps: Mapping[float, float],
    n_pgd: int,
    *,
    large_eps: tuple[float, float] | None = None,
    autoattack_report: Mapping[str, Any] | None = None,
    pgd_on_autoattack_images: float | None = None,
) -> list[dict[str, Any]]:
    """The evaluation checklist's tests (Carlini et al. 2019, sec. 5; Athalye et al. 2018).

    pgd_by_eps: PGD accuracy per eps on one image set of n_pgd images, eps 0 = clean.
    large_eps: (eps, PGD accuracy) at a very large budget, on the same images.
    autoattack_report: `autoattack()`'s report; pgd_on_autoattack_images: PGD accuracy at
    the AutoAttack eps on AutoAttack's images.
    Each check: {"name", "passed", "detail"} with a sentence a reader can act on.
    """
    checks = []
    grid = sorted(pgd_by_eps.items())
    if large_eps is not None:
        grid = sorted([*grid, large_eps])
    tol = _tolerance(n_pgd)
    rises = [
        (e0, a0, e1, a1)
        for (e0, a0), (e1, a1) in zip(grid, grid[1:], strict=False)
        if a1 > a0 + tol
    ]
    if len(grid) >= 2:
        if rises:
            e0, a0, e1, a1 = rises[0]
            detail = (
                f"PGD accuracy rises from {a0:.1%} at eps {e0 * 255:.4g}/255 to {a1:.1%} at "
                f"{e1 * 255:.4g}/255: a larger budget must never help the model, so the attack "
                "is not finding the worst case (masked or noisy gradients)"
            )
        else:
            detail = f"PGD accuracy does not rise with eps over {len(grid)} budgets"
        checks.append(_check("accuracy_falls_with_eps", not rises, detail))
    if large_eps is not None:
        e, a = large_eps
        ok = a <= LARGE_EPS_MAX_ACCURACY
        checks.append(
            _check(
                "large_budget_breaks_model",
                ok,
                f"PGD accuracy at eps {e * 255:.4g}/255 is {a:.1%}"
                + (
                    ""
                    if ok
                    else f", above {LARGE_EPS_MAX_ACCURACY:.0%}: at that budget any image can be"
                    " turned into any other, so an attack that fails there is not following the"
                    " gradient"
                ),
            )
        )
    if autoattack_report is not None and autoattack_report.get("n"):
        n_aa = int(autoattack_report["n"])
        aa_acc = float(autoattack_report["accuracy"])
        tol_aa = _tolerance(n_aa)
        if pgd_on_autoattack_images is not None:
            ok = aa_acc <= pgd_on_autoattack_images + tol_aa
            checks.append(
                _check(
                    "autoattack_not_above_pgd",
                    ok,
                    f"AutoAttack {aa_acc:.1%} vs PGD {pgd_on_autoattack_images:.1%} on the same "
                    f"{n_aa} images"
                    + ("" if ok else ": the stronger attack should never do worse than PGD"),
                )
            )
        after = autoattack_report.get("after") or {}
        if "square" in after and "fab-t" in after:
            drop = after["fab-t"] - after["square"]
            ok = drop <= tol_aa
            checks.append(
                _check(
                    "black_box_not_stronger",
                    ok,
                    f"the black-box Square attack lowered accuracy by {drop:.1%} after the "
                    "white-box attacks"
                    + (
                        ""
                        if ok
                        else ": a query-only attack beating gradient attacks means the gradients"
                        " are masked"
                    ),
                )
            )
    return checks
