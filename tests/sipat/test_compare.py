"""The comparison driver: every variant is wired to its method and settings, runs resume,
and the table is built from what the runs measured."""

import json

import pytest

from worker.sipat.compare import LABELS, VARIANTS, markdown_table, run_compare

TINY = {"epochs": 1, "eps_warmup_epochs": 0, "eval_subset": 24, "eval_steps": 2, "steps": 1}


def test_variants_wiring_resume_and_table(tmp_path):
    variants = ("sip_at_auto", "igd", "fast_sip_at", "fast_sip_at_fgsm_rs")
    summary = run_compare("salience", [0], tmp_path, variants=variants, overrides=TINY,
                          progress=False)
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
        assert 0 <= r["robust"] <= 1 and 0 <= r["clean"] <= 1
    # a second call resumes every finished run and reports the same numbers
    again = run_compare("salience", [0], tmp_path, variants=variants, overrides=TINY,
                        progress=False)
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
