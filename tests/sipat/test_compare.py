"""The comparison driver: every variant is wired to its method and settings, runs resume,
and the table is built from what the runs measured."""

import json

import pytest

from worker.sipat.compare import (
    LABELS,
    VARIANTS,
    claims_table,
    describe_difference,
    markdown_table,
    paired_difference,
    run_compare,
)

TINY = {
    "epochs": 1,
    "eps_warmup_epochs": 0,
    "eval_subset": 24,
    "eval_steps": 2,
    "epoch_eval_steps": 1,
    "steps": 1,
    "autoattack_n": 8,
}


def test_variants_wiring_resume_and_table(tmp_path):
    variants = ("sip_at_auto", "igd", "fast_sip_at", "fast_sip_at_fgsm_rs")
    summary = run_compare(
        "salience", [0], tmp_path, variants=variants, overrides=TINY, progress=False
    )
    seed_dir = tmp_path / "salience" / "seed0"
    records = {
        v: json.loads((seed_dir / v / "metrics.json").read_text())["method"] for v in variants
    }
    teacher = str(seed_dir / "standard" / "final.pt")
    assert records["sip_at_auto"]["mask_source"] == "gradcam"
    assert records["sip_at_auto"]["auto_mask_model"] == teacher
    assert records["igd"]["igd_teacher"] == teacher
    assert records["fast_sip_at"]["fast_attack"] == "n_fgsm"
    assert records["fast_sip_at_fgsm_rs"]["fast_attack"] == "fgsm_rs"
    for v in variants:
        (r,) = summary["results"][v]
        assert 0 <= r["pgd"] <= 1 and 0 <= r["clean"] <= 1
        assert r["autoattack_n"] == 8 and 0 <= r["autoattack"] <= r["clean"]
    # a second call resumes every finished run and reports the same numbers
    again = run_compare(
        "salience", [0], tmp_path, variants=variants, overrides=TINY, progress=False
    )
    assert again["results"] == summary["results"]
    table = markdown_table(summary).splitlines()
    assert len(table) == 2 + len(variants)
    for v, line in zip(variants, table[2:], strict=True):
        clean = 100 * summary["results"][v][0]["clean"]
        assert line.startswith(f"| {LABELS[v]} | {clean:.1f} ± 0.0 |")
    assert set(VARIANTS) == set(LABELS)


def test_unknown_dataset_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset"):
        run_compare("cifar", [0], tmp_path)


def test_paired_difference_has_a_t_interval():
    d = paired_difference([0.80, 0.82, 0.79, 0.81, 0.80], [0.70, 0.71, 0.72, 0.69, 0.70])
    assert abs(d["mean"] - 0.10) < 1e-9 and d["n"] == 5
    # differences 0.10 0.11 0.07 0.12 0.10: sd 0.01871; t(0.975, 4) = 2.7764; half-width
    # 2.7764 * 0.01871 / sqrt(5) = 0.02323
    assert abs((d["high"] - d["low"]) / 2 - 0.02323) < 5e-5
    assert "no difference" not in describe_difference(d)
    inside = paired_difference([0.5, 0.6, 0.4], [0.55, 0.5, 0.45])
    assert describe_difference(inside).endswith("(no difference: the interval holds 0)")
    with pytest.raises(ValueError):
        paired_difference([0.5], [0.4])


def test_claims_table_pairs_runs_by_seed():
    def runs(values):
        return [
            {"seed": s, "clean": c, "pgd": p, "autoattack": a} for s, (c, p, a) in enumerate(values)
        ]

    summary = {
        "results": {
            "pgd_at": runs([(0.70, 0.50, 0.40), (0.72, 0.49, 0.41), (0.69, 0.51, 0.39)]),
            "sip_at": runs([(0.80, 0.30, 0.20), (0.81, 0.28, 0.22), (0.79, 0.31, 0.21)]),
        }
    }
    lines = claims_table(summary).splitlines()
    assert len(lines) == 3  # only the pair present in the summary
    assert lines[2].startswith(f"| {LABELS['sip_at']} minus {LABELS['pgd_at']} | 3 | +9.7 [")


def test_the_standard_model_is_trained_only_when_asked_for_or_needed():
    from worker.sipat.compare import _training_order

    assert _training_order(("sip_at",)) == ["sip_at"]  # a mask_fraction sweep needs no teacher
    assert _training_order(("igd", "pgd_at")) == ["standard", "igd", "pgd_at"]
    assert _training_order(("pgd_at", "standard")) == ["standard", "pgd_at"]
