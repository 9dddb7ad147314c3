"""A sweep: one or two settings a sweep may vary (Setting.sweep), each over a list of values,
across seeds, with an optional baseline arm; its grid checked in one pass; and its table, the
same for the API and the library's command line: every run's figures from its final
evaluation, each arm's mean and 95 % interval over seeds, and each arm minus the baseline,
paired by seed (runconfig/stats.py).

A run belongs to an arm by its own settings: to the baseline when it has every setting the
baseline sets, else to the arm of its values of the swept settings. So the table needs only
the runs' configurations and results, wherever they were trained.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runconfig import stats
from runconfig.settings import ConfigError, check_type
from runconfig.train_config import METHOD, SETTINGS, TYPES, applies, check

MAX_RUNS = 500
MAX_AXES = 2
MAX_VALUES = 50
SCALES = ("linear", "log")
BASELINE = "baseline"
# the states a run's figures are taken in; failed and cancelled runs are counted, left out
FINISHED = "succeeded"
LEFT_OUT = ("failed", "cancelled")


@dataclass(frozen=True)
class Axis:
    """One swept setting and its values, in the order given."""

    name: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Arm:
    """One cell of the grid (its swept values), or the baseline."""

    values: tuple[tuple[str, Any], ...]
    baseline: bool = False

    @property
    def key(self) -> str:
        if self.baseline:
            return BASELINE
        return ", ".join(f"{name}={_shown(name, v)}" for name, v in self.values)


@dataclass
class Plan:
    """A sweep that passed its checks: the arms, and every run as (arm, seed, config)."""

    axes: list[Axis]
    seeds: list[int]
    baseline: dict[str, Any] | None
    arms: list[Arm]
    runs: list[tuple[Arm, int, dict[str, Any]]] = field(default_factory=list)


def _shown(name: str, value: Any) -> str:
    spec = SETTINGS.get(name)
    if spec is not None and spec.budget and isinstance(value, (int, float)):
        return spec.reads(float(value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def _tidy(value: float) -> float:
    """A computed grid value without binary noise (0.30000000000000004 -> 0.3)."""
    return float(f"{value:.12g}")


def expand(name: str, given: Any) -> list[Any]:
    """A setting's values: a list as given, or a range {start, stop, count, scale} with count
    values from start to stop, evenly spaced (linear) or by a constant factor (log). Values are
    checked against the setting's type. Raises ConfigError naming the setting."""
    if isinstance(given, Mapping):
        unknown = set(given) - {"start", "stop", "count", "scale"}
        if unknown:
            raise ConfigError(
                name, f"a range has start, stop, count and scale, not {sorted(unknown)}"
            )
        start, stop = given.get("start"), given.get("stop")
        count, scale = given.get("count"), given.get("scale", "linear")
        numbers = (start, stop)
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in numbers):
            raise ConfigError(name, "a range needs a numeric start and stop")
        if isinstance(count, bool) or not isinstance(count, int) or not 2 <= count <= MAX_VALUES:
            raise ConfigError(name, f"a range needs a count between 2 and {MAX_VALUES}")
        if scale not in SCALES:
            raise ConfigError(name, "a range's scale is linear or log")
        assert isinstance(start, (int, float)) and isinstance(stop, (int, float))
        if scale == "log" and (start <= 0 or stop <= 0):
            raise ConfigError(name, "a log range needs a start and stop above 0")
        steps = [i / (count - 1) for i in range(count)]
        if scale == "log":
            values: list[Any] = [start * (stop / start) ** s for s in steps]
        else:
            values = [start + (stop - start) * s for s in steps]
        values = [_tidy(v) for v in values]
        if TYPES[name] is int:
            values = [round(v) for v in values]
    elif isinstance(given, list):
        values = list(given)
    else:
        raise ConfigError(name, "give a list of values or a range {start, stop, count, scale}")
    if not values:
        raise ConfigError(name, "give at least one value")
    if len(values) > MAX_VALUES:
        raise ConfigError(name, f"give at most {MAX_VALUES} values")
    checked = [check_type(name, v, TYPES[name]) for v in values]
    if len(set(checked)) != len(checked):
        repeated = sorted({_shown(name, v) for v in checked if checked.count(v) > 1})
        raise ConfigError(name, f"each value may appear once; repeated: {', '.join(repeated)}")
    return checked


def plan(
    base: Mapping[str, Any],
    axes: Sequence[tuple[str, Any]],
    seeds: Sequence[int],
    baseline: Mapping[str, Any] | None = None,
    *,
    form: bool = True,
) -> tuple[Plan | None, list[ConfigError]]:
    """The sweep's grid checked in one pass, with every refusal (one per field): a setting a
    sweep may not vary or that does not apply to the base's method, an empty or repeated
    value, a value outside the setting's bounds (runconfig's own check, on every run's
    configuration), a baseline that is one of the arms, more than MAX_RUNS runs. form: the
    base is a launch form's (runconfig.check_form), not a library config."""
    errors: list[ConfigError] = []
    named: set[str] = set()

    def refuse(name: str, message: str) -> None:
        if name not in named:
            errors.append(ConfigError(name, message))
            named.add(name)

    base_checked = check(base, form=form)
    for e in base_checked.errors:
        refuse(e.field, e.message)
    if not axes:
        refuse("axes", "choose one or two settings to sweep")
    elif len(axes) > MAX_AXES:
        refuse("axes", f"a sweep varies at most {MAX_AXES} settings")
    parsed: list[Axis] = []
    for name, given in axes:
        if name in named:
            continue
        spec = SETTINGS.get(name)
        if spec is None:
            refuse(name, "no such setting")
            continue
        if not spec.sweep:
            refuse(name, f"a sweep may not vary the {spec.label}")
            continue
        if any(a.name == name for a in parsed):
            refuse(name, "this setting is swept twice; give its values once")
            continue
        if applies(spec.methods, spec.when, base_checked.values, base_checked.refused) is False:
            refuse(
                name,
                f"does not apply to {base_checked.values[METHOD]} runs; "
                "sweep it on a method that uses it",
            )
            continue
        try:
            values = expand(name, given)
        except ConfigError as e:
            refuse(name, e.message)
            continue
        outside = [v for v in values if spec.refusal(v) or spec.form_refusal(v)]
        if outside:
            refuse(name, spec.refusal(outside[0]) or spec.form_refusal(outside[0]) or "")
            continue
        parsed.append(Axis(name, tuple(values)))
    seed_list = list(seeds)
    if not seed_list:
        refuse("seeds", "give at least one seed")
    elif len(set(seed_list)) != len(seed_list):
        refuse("seeds", "each seed may appear only once")
    elif any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seed_list):
        refuse("seeds", "seeds are whole numbers >= 0")
    cells = 1
    for axis in parsed:
        cells *= len(axis.values)
    total = (cells + (1 if baseline else 0)) * len(seed_list)
    if total > MAX_RUNS:
        refuse("runs", f"this sweep would launch {total} runs; at most {MAX_RUNS} at once")
    if errors:
        return None, errors

    arms = [
        Arm(tuple(zip([a.name for a in parsed], combo, strict=True))) for combo in _grid(parsed)
    ]
    out = Plan(parsed, seed_list, dict(baseline) if baseline else None, arms)
    configs = [(arm, {**base, **dict(arm.values)}) for arm in arms]
    if baseline:
        unknown = [k for k in baseline if k not in SETTINGS]
        if unknown:
            return None, [ConfigError(BASELINE, f"no such setting: {', '.join(unknown)}")]
        baseline_arm = Arm((), baseline=True)
        out.arms.append(baseline_arm)
        configs.append((baseline_arm, {**base, **baseline}))
    checked_configs = [(arm, check(config, form=form)) for arm, config in configs]
    for arm, checked in checked_configs:
        for refusal in checked.errors:
            if arm.baseline:
                refuse(BASELINE, f"{refusal.field}: {refusal.message}")
            else:
                refuse(refusal.field, refusal.message)
        for seed in seed_list:
            out.runs.append((arm, seed, {**checked.values, "seed": seed}))
    if baseline and not errors:
        # as stored: the values the check made of them (an int given for a float, a float)
        base_values = checked_configs[-1][1].values
        out.baseline = {k: base_values[k] for k in baseline}
        for arm, checked in checked_configs[:-1]:
            if all(checked.values[k] == v for k, v in out.baseline.items()):
                refuse(
                    BASELINE,
                    f"is the same as the arm {arm.key}; set it apart by a setting the sweep "
                    "does not vary (for example the method)",
                )
    if errors:
        return None, errors
    return out, []


def _grid(axes: Sequence[Axis]) -> list[tuple[Any, ...]]:
    combos: list[tuple[Any, ...]] = [()]
    for axis in axes:
        combos = [(*c, v) for c in combos for v in axis.values]
    return combos


def grid_arms(axes: Sequence[Axis], baseline: bool) -> list[Arm]:
    """Every cell of the grid in order (the first axis slowest), then the baseline if any."""
    names = [a.name for a in axes]
    arms = [Arm(tuple(zip(names, cell, strict=True))) for cell in _grid(axes)]
    return arms + ([Arm((), baseline=True)] if baseline else [])


def arm_of(
    config: Mapping[str, Any], axes: Sequence[str], baseline: Mapping[str, Any] | None
) -> Arm:
    """The arm a run belongs to, by its own settings."""
    if baseline and all(config.get(k) == v for k, v in baseline.items()):
        return Arm((), baseline=True)
    return Arm(tuple((name, config.get(name)) for name in axes))


# ---- a run's figures ------------------------------------------------------------------------

CLEAN = "clean_accuracy"
AUTOATTACK = "autoattack_accuracy"
AFTER = "autoattack_after:"
PGD = "pgd_accuracy@"
AGREEMENT = "salience_top_mass_in_mask"
# figures the app holds beside a run's own results: the run's human-validated robust accuracy
# from a label study (at the study's epsilon, in /255), and the inequality tests' error rates
HUMAN_VALIDATED = "human_validated_robust_accuracy@"
INEQUALITY = "inequality:"
# the inequality tests whose error rates are summarised (each as the mean over its levels)
INEQUALITY_TESTS = {
    "inductive_noise_added": "inductive noise added",
    "inductive_noise_replaced": "inductive noise replacing pixels",
    "random_noise_added": "random noise added",
}


def figures(final: Mapping[str, Any]) -> dict[str, float]:
    """The figures of one run's final evaluation (metrics.json's "final"): clean accuracy, the
    AutoAttack headline and the accuracy after each of its attacks, PGD at each eps, and the
    share of the model's salience inside the human masks; those the run has."""
    out: dict[str, float] = {}

    def number(key: str, value: Any) -> None:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if math.isfinite(value):
                out[key] = float(value)

    number(CLEAN, final.get(CLEAN))
    autoattack = final.get("autoattack") or {}
    number(AUTOATTACK, autoattack.get("accuracy"))
    for attack, value in (autoattack.get("after") or {}).items():
        number(AFTER + str(attack), value)
    for eps, value in (final.get("pgd_accuracy") or {}).items():
        number(PGD + str(eps), value)
    number(AGREEMENT, (final.get("salience_agreement") or {}).get("top_mass_in_mask"))
    return out


def metric_label(key: str) -> str:
    """How a page and a table name a figure."""
    if key == CLEAN:
        return "clean accuracy"
    if key == AUTOATTACK:
        return "AutoAttack accuracy"
    if key.startswith(AFTER):
        return f"AutoAttack, after {key[len(AFTER) :]}"
    if key.startswith(PGD):
        eps = key[len(PGD) :]
        try:
            shown = f"{float(eps) * 255:.3g}/255"
        except ValueError:
            shown = eps
        return f"PGD at eps {shown}"
    if key == AGREEMENT:
        return "salience top mass inside the human mask"
    if key.startswith(HUMAN_VALIDATED):
        return f"human-validated robust accuracy at eps {key[len(HUMAN_VALIDATED) :]}/255"
    if key.startswith(INEQUALITY):
        test = key[len(INEQUALITY) :]
        if test.startswith("occlusion_"):
            return f"inequality: error under occlusion by {test[len('occlusion_') :]} (mean over r)"
        return f"inequality: error under {INEQUALITY_TESTS.get(test, test)} (mean over t)"
    return key


def inequality_figures(result: Mapping[str, Any]) -> dict[str, float]:
    """One run's inequality tests (worker.sipat.inequality's result) as sweep figures: each
    noise test's error rate averaged over its levels t, and each occlusion's over its radii."""
    out: dict[str, float] = {}

    def mean_rate(rates: Any) -> float | None:
        values = [
            float(v)
            for v in (rates or {}).values()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        ]
        return sum(values) / len(values) if values else None

    for test in INEQUALITY_TESTS:
        value = mean_rate(result.get(test))
        if value is not None:
            out[INEQUALITY + test] = value
    for fill, rates in (result.get("inductive_occlusion") or {}).items():
        value = mean_rate(rates)
        if value is not None:
            out[f"{INEQUALITY}occlusion_{fill}"] = value
    return out


def _metric_order(key: str) -> tuple[int, float, str]:
    """Figures in a fixed order of kinds; those at an epsilon by its value."""
    prefixes = (CLEAN, AUTOATTACK, AFTER, PGD, HUMAN_VALIDATED, AGREEMENT, INEQUALITY)
    for rank, prefix in enumerate(prefixes):
        if key.startswith(prefix):
            try:
                at = float(key[len(prefix) :]) if prefix in (PGD, HUMAN_VALIDATED) else 0.0
            except ValueError:
                at = 0.0
            return rank, at, key
    return len(prefixes), 0.0, key


@dataclass(frozen=True)
class Record:
    """One run as the table reads it: where it is from (an id or a folder), its settings,
    state and figures."""

    ref: Any
    config: Mapping[str, Any]
    state: str
    figures: Mapping[str, float]

    @property
    def seed(self) -> Any:
        return self.config.get("seed")


def table(
    records: Sequence[Record],
    axes: Sequence[str],
    baseline: Mapping[str, Any] | None,
    arms: Sequence[Arm] | None = None,
    margin_points: float | None = None,
) -> dict[str, Any]:
    """The sweep's table: every run with its arm and figures; each arm's figures as mean and
    95 % t interval over its succeeded runs (failed and cancelled runs counted, left out);
    each arm minus the baseline, paired by seed (t and bootstrap intervals, and a verdict at
    `margin_points`, in points). Arms in the order given, then any others the runs hold."""
    order = list(arms or [])
    members: dict[Arm, list[Record]] = {arm: [] for arm in order}
    for record in records:
        arm = arm_of(record.config, axes, baseline)
        if arm not in members:
            members[arm] = []
            order.append(arm)
        members[arm].append(record)
    keys = sorted({k for r in records if r.state == FINISHED for k in r.figures}, key=_metric_order)

    def by_seed(group: Sequence[Record], key: str) -> dict[Any, float]:
        return {r.seed: r.figures[key] for r in group if r.state == FINISHED and key in r.figures}

    base_arm = next((a for a in order if a.baseline), None)
    base_runs = members.get(base_arm, []) if base_arm else []
    rows = []
    for arm in order:
        group = sorted(members[arm], key=lambda r: (str(type(r.seed)), r.seed))
        counts = {state: sum(r.state == state for r in group) for state in (FINISHED, *LEFT_OUT)}
        metrics: dict[str, Any] = {}
        paired: dict[str, Any] = {}
        for key in keys:
            values = by_seed(group, key)
            if values:
                metrics[key] = stats.mean_interval(list(values.values())).as_dict()
            if base_arm is None or arm.baseline or not values:
                continue
            against = by_seed(base_runs, key)
            difference = stats.paired_difference(values, against)
            if difference is None:
                continue
            differences = [values[s] - against[s] for s in difference.seeds]
            paired[key] = {
                **difference.as_dict(),
                **stats.verdict(differences, margin_points),
            }
        rows.append(
            {
                "key": arm.key,
                "baseline": arm.baseline,
                "values": dict(arm.values),
                "runs": len(group),
                "succeeded": counts[FINISHED],
                "failed": counts["failed"],
                "cancelled": counts["cancelled"],
                "pending": len(group) - sum(counts.values()),
                "seeds": [r.seed for r in group if r.state == FINISHED],
                "metrics": metrics,
                "paired": paired,
            }
        )
    return {
        "axes": list(axes),
        "baseline": dict(baseline) if baseline else None,
        "margin_points": margin_points,
        "metrics": keys,
        "labels": {k: metric_label(k) for k in keys},
        "arms": rows,
        "runs": [
            {
                "ref": r.ref,
                "arm": arm_of(r.config, axes, baseline).key,
                "seed": r.seed,
                "state": r.state,
                "figures": dict(r.figures),
            }
            for r in records
        ],
        "left_out": {state: sum(r.state == state for r in records) for state in LEFT_OUT},
    }
