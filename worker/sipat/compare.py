"""Train every method on one dataset over several seeds and tabulate clean / robust accuracy.

Runs go to out_dir/<dataset>/seed<k>/<variant>/ and resume like any training run. The
standard model of each seed is the IGD teacher and the source of the automatic masks.
"""

from __future__ import annotations

import json
import logging
import statistics
from pathlib import Path
from typing import Any

from runconfig import stats

from .benchmark_data import mnist_strokes, salience_benchmark
from .config import TrainConfig
from .data import DataBundle
from .train import train

_logger = logging.getLogger(__name__)

VARIANTS = (
    "standard",
    "pgd_at",
    "sip_at",
    "sip_at_auto",
    "part",
    "igd",
    "fast_sip_at",
    "fast_sip_at_fgsm_rs",
)
LABELS = {
    "standard": "Standard",
    "pgd_at": "PGD-AT",
    "sip_at": "SIP-AT (true masks)",
    "sip_at_auto": "SIP-AT (automatic masks, Grad-CAM of the standard model)",
    "part": "PART",
    "igd": "IGD",
    "fast_sip_at": "fast SIP-AT (masked N-FGSM, the default)",
    "fast_sip_at_fgsm_rs": "fast SIP-AT with fast_attack=fgsm_rs (masked FGSM-RS)",
}

PRESETS: dict[str, dict[str, Any]] = {
    # budget 12/255 > fragile amplitude 10/255; K = 3 with alpha 5/255 to fit a CPU.
    # From the first batch at 12/255, PGD-AT never left chance (loss stuck at ln 4, also
    # with 16 epochs or lr 0.01); a linear eps warm-up over 4 epochs, the same for every
    # adversarial method, lets it learn the shapes first (docs/benchmark-results.md)
    "salience": {
        "epochs": 12,
        "eps_warmup_epochs": 4,
        "batch_size": 64,
        "lr": 0.05,
        "schedule": "cosine",
        "weight_decay": 5e-4,
        "crop_padding": 2,
        "eps": 12 / 255,
        "alpha": 5 / 255,
        "steps": 3,
        "eval_eps": [6 / 255, 12 / 255],
        "eval_subset": 300,
        "epoch_eval_steps": 10,
        "eval_steps": 20,
        "eval_restarts": 5,
        "autoattack_n": 300,
        "part_warmup_epochs": 2,
        "part_eps_low": 10.5 / 255,
        "threads": 1,
    },
    # AutoAttack on 100 of the 300 test digits: at eps 0.2 its APGD-T and FAB-T (9 targets)
    # and Square cost about 4 CPU-minutes per robust model on 300 digits here.
    # eps 0.2 on digits; 1000 training digits; 12 epochs with the same 4-epoch warm-up (with
    # 4 epochs and no warm-up every model was under-trained, docs/benchmark-results.md)
    "mnist": {
        "epochs": 12,
        "eps_warmup_epochs": 4,
        "batch_size": 64,
        "lr": 0.05,
        "schedule": "cosine",
        "weight_decay": 5e-4,
        "crop_padding": 2,
        "hflip": False,
        "eps": 0.2,
        "alpha": 0.08,
        "steps": 3,
        "eval_eps": [0.1, 0.2],
        "eval_subset": 300,
        "epoch_eval_steps": 10,
        "eval_steps": 20,
        "eval_restarts": 5,
        "autoattack_n": 100,
        "part_eps_low": 0.175,
        "part_warmup_epochs": 2,
        "threads": 1,
    },
}


def load_named(dataset: str) -> DataBundle:
    if dataset == "salience":
        return salience_benchmark(
            n_train=1000, n_test=300, image_size=16, region=8, seed=0
        )  # the defaults
    if dataset == "mnist":
        return mnist_strokes(n_test=300, n_train=1000)
    raise ValueError(f"unknown dataset {dataset!r}: salience or mnist")


TEACHER_USERS = ("sip_at_auto", "igd")  # variants that need the seed's standard model


def _training_order(variants) -> list[str]:
    """The variants to train, the standard model first when one is asked for or needed."""
    rest = [v for v in variants if v != "standard"]
    needs_standard = "standard" in variants or any(v in TEACHER_USERS for v in rest)
    return ["standard", *rest] if needs_standard else rest


def run_compare(
    dataset: str,
    seeds: list[int],
    out_dir: Path,
    variants=VARIANTS,
    overrides: dict[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    data = load_named(dataset)
    base = {**PRESETS[dataset], **(overrides or {})}
    results: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    for seed in seeds:
        root = out_dir / dataset / f"seed{seed}"
        teacher = str(root / "standard" / "final.pt")
        for v in _training_order(variants):
            extra: dict[str, Any] = {}
            method = v
            if v == "sip_at_auto":
                method, extra = "sip_at", {"mask_source": "gradcam", "auto_mask_model": teacher}
            elif v == "fast_sip_at_fgsm_rs":
                method, extra = "fast_sip_at", {"fast_attack": "fgsm_rs"}
            elif v == "igd":
                extra = {"igd_teacher": teacher}
            cfg = TrainConfig.from_dict({**base, **extra, "method": method, "seed": seed})
            r = train(cfg, root / v, data=data, progress=progress)
            if v in results:
                results[v].append(run_record(r["final"], cfg.eps, seed))
            _logger.info("%s seed %d %s: %s", dataset, seed, v, results.get(v, [None])[-1])
    summary = {
        "dataset": dataset,
        "source": data.source,
        "seeds": seeds,
        "config": base,
        "results": results,
    }
    (out_dir / dataset).mkdir(parents=True, exist_ok=True)
    (out_dir / dataset / "results.json").write_text(json.dumps(summary, indent=2))
    return summary


def run_record(final: dict[str, Any], eps: float, seed: int) -> dict[str, Any]:
    """The numbers a table row needs from one run's final evaluation."""
    pgd = final["pgd_accuracy"]
    at_eps = min(pgd, key=lambda k: abs(float(k) - eps))
    aa = final.get("autoattack") or {}
    agree = final.get("salience_agreement") or {}
    return {
        "seed": seed,
        "clean": final["clean_accuracy"],
        "pgd": pgd[at_eps],
        "autoattack": aa.get("accuracy"),
        "autoattack_after": aa.get("after"),
        "autoattack_n": aa.get("n"),
        "masking_failed": (final.get("gradient_masking") or {}).get("failed", []),
        "top_mass_in_mask": agree.get("top_mass_in_mask"),
    }


def _ms(values: list[float]) -> str:
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.1f} ± {100 * sd:.1f}"


def paired_difference(a: list[float], b: list[float]) -> dict[str, float]:
    """Mean of a - b over paired seeds with its 95 % t interval (Student, n - 1 dof), by the
    statistics the app uses too (runconfig/stats.py)."""
    if len(a) != len(b) or len(a) < 2:
        raise ValueError("a paired difference needs two equally long lists of >= 2 values")
    t = stats.mean_interval([x - y for x, y in zip(a, b, strict=True)])
    assert t.low is not None and t.high is not None
    return {"mean": t.mean, "low": t.low, "high": t.high, "n": t.n}


def describe_difference(diff: dict[str, float]) -> str:
    """'+5.1 [+2.0, +8.2]' in points, and whether the interval excludes 0."""
    text = f"{100 * diff['mean']:+.1f} [{100 * diff['low']:+.1f}, {100 * diff['high']:+.1f}]"
    if diff["low"] > 0 or diff["high"] < 0:
        return text
    return text + " (no difference: the interval holds 0)"


# (variant, baseline) pairs whose differences the docs make claims about
CLAIMS = (("sip_at", "pgd_at"), ("fast_sip_at", "sip_at"), ("fast_sip_at", "pgd_at"))


def _by_seed(runs: list[dict[str, Any]], key: str) -> dict[int, float]:
    return {r["seed"]: r[key] for r in runs if r.get(key) is not None}


def claims_table(summary: dict[str, Any], pairs=CLAIMS) -> str:
    """Paired differences across seeds, in points, with 95 % intervals, for each claim pair
    present in the summary."""
    lines = [
        "| difference | seeds | clean (points) | PGD (points) | AutoAttack (points) |",
        "|---|---|---|---|---|",
    ]
    results = summary["results"]
    for a, b in pairs:
        if a not in results or b not in results:
            continue
        cells = []
        seeds: list[int] = []
        for key in ("clean", "pgd", "autoattack"):
            ra, rb = _by_seed(results[a], key), _by_seed(results[b], key)
            seeds = sorted(set(ra) & set(rb))
            if len(seeds) < 2:
                cells.append("-")
                continue
            diff = paired_difference([ra[k] for k in seeds], [rb[k] for k in seeds])
            cells.append(describe_difference(diff))
        lines.append(
            f"| {LABELS.get(a, a)} minus {LABELS.get(b, b)} | {len(seeds)} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)


def markdown_table(summary: dict[str, Any]) -> str:
    cfg = summary["config"]
    eps = cfg["eps"] * 255
    steps, restarts = cfg.get("eval_steps", 20), cfg.get("eval_restarts", 1)
    n_aa = cfg.get("autoattack_n", 0)
    lines = [
        "| method | clean accuracy (%) "
        f"| PGD-{steps}, {restarts} restarts, at eps {eps:.3g}/255 (%) "
        f"| AutoAttack (standard, {n_aa} images) at eps {eps:.3g}/255 (%) "
        "| Grad-CAM top mass inside the human mask (%) | gradient-masking checks failed |",
        "|---|---|---|---|---|---|",
    ]
    for v, runs in summary["results"].items():
        clean, robust = _ms([r["clean"] for r in runs]), _ms([r["pgd"] for r in runs])
        aa = _ms([r["autoattack"] for r in runs if r.get("autoattack") is not None])
        agree = _ms([r["top_mass_in_mask"] for r in runs if r.get("top_mass_in_mask") is not None])
        failed = sorted(
            {f"{name} (seed {r['seed']})" for r in runs for name in r["masking_failed"]}
        )
        failed_text = ", ".join(failed) or "none"
        lines.append(
            f"| {LABELS.get(v, v)} | {clean} | {robust} | {aa} | {agree} | {failed_text} |"
        )
    return "\n".join(lines)
