"""A sweep without the app: every arm of a grid of one or two settings, with a baseline arm,
trained over seeds on a named benchmark (or only read back from results files), and the same
table the app's sweep page shows (runconfig/sweep.py, runconfig/stats.py).

Runs go to out_dir/<arm>/seed<k>/ and resume like any training run; the table is read from
every metrics.json under a folder, so runs trained anywhere (a cluster, by hand) count, each
placed in its arm by its own settings.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from runconfig import sweep as grid

from .config import ConfigError

_logger = logging.getLogger(__name__)


def read_results(folder: Path) -> list[grid.Record]:
    """Every run's results file (metrics.json) under a folder, as the table reads runs."""
    out = []
    for path in sorted(folder.rglob("metrics.json")):
        try:
            result = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            _logger.warning("skipped %s: %s", path, e)
            continue
        config, final = result.get("config"), result.get("final")
        if not isinstance(config, dict) or not isinstance(final, dict):
            continue
        out.append(grid.Record(str(path.parent), config, "succeeded", grid.figures(final)))
    return out


def _folder(arm: grid.Arm) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", arm.key.replace(", ", "__"))


def train_sweep(
    dataset: str,
    base: Mapping[str, Any],
    axes: Sequence[tuple[str, Any]],
    seeds: Sequence[int],
    baseline: Mapping[str, Any] | None,
    out_dir: Path,
    progress: bool = True,
) -> None:
    """Train every arm and seed on a named benchmark (compare.PRESETS, with `base` over it).
    Raises ConfigError naming the first wrong field of the sweep."""
    from .compare import PRESETS, load_named
    from .config import TrainConfig
    from .train import train

    plan, errors = grid.plan({**PRESETS[dataset], **base}, axes, seeds, baseline, form=False)
    if plan is None:
        raise errors[0]
    data = load_named(dataset)
    for arm, seed, config in plan.runs:
        cfg = TrainConfig.from_dict(config)
        run_dir = out_dir / _folder(arm) / f"seed{seed}"
        _logger.info("sweep: %s, seed %d -> %s", arm.key, seed, run_dir)
        train(cfg, run_dir, data=data, progress=progress)


def sweep_table(
    folder: Path,
    axes: Sequence[tuple[str, Any]],
    baseline: Mapping[str, Any] | None,
    margin_points: float | None = None,
) -> dict[str, Any]:
    """The table of the runs found under a folder, the arms in the grid's order."""
    parsed = []
    for name, values in axes:
        try:
            parsed.append(grid.Axis(name, tuple(grid.expand(name, values))))
        except KeyError:
            raise ConfigError(name, "no such setting") from None
    arms = grid.grid_arms(parsed, bool(baseline))
    return grid.table(read_results(folder), [a.name for a in parsed], baseline, arms, margin_points)


def _points(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def markdown(table: dict[str, Any], metrics: Sequence[str] | None = None) -> str:
    """The table as markdown: each arm's mean [95 % interval] in points with the seeds behind
    it, and each arm minus the baseline with its t interval, bootstrap interval and verdict."""
    keys = list(metrics or [k for k in table["metrics"] if "after" not in k])
    labels = table["labels"]
    head = ["arm", "seeds (failed, cancelled)"]
    for k in keys:
        head += [f"{labels[k]} (%)", f"{labels[k]} minus baseline (points)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for arm in table["arms"]:
        cells = [arm["key"], f"{arm['succeeded']} ({arm['failed']}, {arm['cancelled']})"]
        for k in keys:
            m = arm["metrics"].get(k)
            if m is None:
                cells.append("-")
            elif m["low"] is None:
                cells.append(_points(m["mean"]))
            else:
                cells.append(f"{_points(m['mean'])} [{_points(m['low'])}, {_points(m['high'])}]")
            d = arm["paired"].get(k)
            if d is None or d["low"] is None:
                cells.append("-")
            else:
                cells.append(
                    f"{100 * d['mean']:+.1f} [{100 * d['low']:+.1f}, {100 * d['high']:+.1f}], "
                    f"bootstrap [{100 * d['boot_low']:+.1f}, {100 * d['boot_high']:+.1f}], "
                    f"{d['n']} pairs: {d['text']}"
                )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
