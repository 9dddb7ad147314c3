"""A sweep's grid checked in one pass (runconfig/sweep.py) and its table: arms found from the
runs' own settings, failed runs counted and left out, paired differences against the
baseline."""

from __future__ import annotations

import pytest

from runconfig import sweep
from runconfig.sweep import Record

SIP = {"method": "sip_at", "model": "small_cnn", "epochs": 1}


def _errors(*args, **kwargs):
    result, errors = sweep.plan(*args, **kwargs)
    assert result is None
    return {e.field: e.message for e in errors}


def test_a_two_by_two_sweep_with_a_baseline():
    got, errors = sweep.plan(
        SIP,
        [("mask_fraction", [0.25, 0.5]), ("eps", {"start": 4 / 255, "stop": 8 / 255, "count": 2})],
        [0, 1],
        {"method": "pgd_at"},
    )
    assert errors == [] and got is not None
    assert [a.key for a in got.arms] == [
        "mask_fraction=0.25, eps=4/255",
        "mask_fraction=0.25, eps=8/255",
        "mask_fraction=0.5, eps=4/255",
        "mask_fraction=0.5, eps=8/255",
        "baseline",
    ]
    assert len(got.runs) == 10
    arm, seed, config = got.runs[-1]
    assert arm.baseline and seed == 1 and config["method"] == "pgd_at"
    assert config["seed"] == 1


def test_log_and_linear_ranges():
    assert sweep.expand("lr", {"start": 0.001, "stop": 0.1, "count": 3, "scale": "log"}) == [
        0.001,
        0.01,
        0.1,
    ]
    assert sweep.expand("mask_fraction", {"start": 0, "stop": 1, "count": 5}) == [
        0.0,
        0.25,
        0.5,
        0.75,
        1.0,
    ]
    assert sweep.expand("steps", {"start": 1, "stop": 10, "count": 4}) == [1, 4, 7, 10]


def test_every_bad_field_gets_a_sentence():
    errors = _errors(
        SIP,
        [("seed", [1, 2]), ("mask_fraction", [0.5, 1.5])],
        [],
    )
    assert errors["seed"] == "a sweep may not vary the seed"
    assert errors["mask_fraction"].startswith("must be between 0 and 1")
    assert errors["seeds"] == "give at least one seed"
    errors = _errors(SIP, [("mask_fraction", []), ("lr", [0.1, 0.1])], [0])
    assert errors["mask_fraction"] == "give at least one value"
    assert errors["lr"] == "each value may appear once; repeated: 0.1"
    errors = _errors({"method": "pgd_at"}, [("mask_fraction", [0.5])], [0])
    assert "does not apply to pgd_at runs" in errors["mask_fraction"]
    errors = _errors(SIP, [("lr", {"start": 0.001, "stop": 0.1, "count": 50})], list(range(11)))
    assert errors["runs"] == "this sweep would launch 550 runs; at most 500 at once"
    errors = _errors(SIP, [("lr", [0.1])], [0], {"mask_fraction": 1.0})
    assert "is the same as the arm" in errors["baseline"]
    errors = _errors(SIP, [], [0])
    assert errors["axes"] == "choose one or two settings to sweep"


def test_the_table_pairs_arms_with_the_baseline_by_seed():
    axes = ["mask_fraction"]
    baseline = {"method": "pgd_at"}

    def run(ref, method, share, seed, clean, state="succeeded"):
        config = {"method": method, "mask_fraction": share, "seed": seed}
        figures = {"clean_accuracy": clean, "autoattack_accuracy": 0.3} if clean else {}
        return Record(ref, config, state, figures)

    records = [
        run(1, "sip_at", 0.5, 0, 0.91),
        run(2, "sip_at", 0.5, 1, 0.92),
        run(3, "sip_at", 0.5, 2, 0.0, "failed"),
        run(4, "pgd_at", 1.0, 0, 0.88),
        run(5, "pgd_at", 1.0, 1, 0.87),
        run(6, "pgd_at", 1.0, 2, 0.86),
    ]
    got = sweep.table(records, axes, baseline, margin_points=1.0)
    arm, base = got["arms"]
    assert arm["key"] == "mask_fraction=0.5" and base["baseline"]
    assert (arm["runs"], arm["succeeded"], arm["failed"]) == (3, 2, 1)
    assert arm["metrics"]["clean_accuracy"]["n"] == 2
    paired = arm["paired"]["clean_accuracy"]
    assert paired["seeds"] == [0, 1] and paired["mean"] == pytest.approx(0.04)
    assert paired["verdict"] in ("differs", "not shown to differ")
    assert got["left_out"] == {"failed": 1, "cancelled": 0}
    assert got["metrics"] == ["clean_accuracy", "autoattack_accuracy"]


def test_figures_of_a_final_evaluation():
    final = {
        "clean_accuracy": 0.9,
        "autoattack": {"accuracy": 0.3, "after": {"apgd-ce": 0.4, "square": 0.3}},
        "pgd_accuracy": {"0.031373": 0.35},
        "salience_agreement": {"top_mass_in_mask": 0.6},
    }
    got = sweep.figures(final)
    assert got == {
        "clean_accuracy": 0.9,
        "autoattack_accuracy": 0.3,
        "autoattack_after:apgd-ce": 0.4,
        "autoattack_after:square": 0.3,
        "pgd_accuracy@0.031373": 0.35,
        "salience_top_mass_in_mask": 0.6,
    }
    assert sweep.metric_label("pgd_accuracy@0.031373") == "PGD at eps 8/255"
