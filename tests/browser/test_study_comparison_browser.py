"""Run against run and the model beside the people, in Chromium: a 2AFC study of a PGD-AT and a
SIP-AT run answered by twelve simulated participants through the participant API (the SIP-AT
run's perturbations harder to see); the study page states the comparison in one sentence with
its interval and the participants who saw both runs, lists the paired differences per epsilon,
draws AutoAttack's curve beside PGD's with the attack and its images named, and gives each
run's robust accuracy at people's threshold; the SIP-AT run's page gives the same figure.

AutoAttack's numbers are stored as the stimulus task stores them (stimuli.
record_model_autoattack) rather than measured here, which would cost minutes of Square queries
on the tiny model: tests/backend/test_study_comparison.py measures them for real."""

from __future__ import annotations

import math
import re

import numpy as np
from sqlalchemy import select

from tests.backend.study_support import analysed_results, make_dataset, make_run, ready_study

GRID = [0, 2, 4, 8, 16]
THRESHOLDS = {"pgd_at": 2.5, "sip_at": 7.0}  # grey levels, halfway up (75 % correct)


def _aa_points(accs: list[float], n: int) -> list[dict]:
    return [
        {
            "epsilon_255": float(e),
            "accuracy": a,
            "n_robust": round(a * n),
            "n": n,
            "pgd_accuracy": min(1.0, a + 0.125),
        }  # fmt: skip
        for e, a in zip(GRID, accs, strict=True)
    ]


def _text(s: str) -> str:
    return re.sub(r"\s+", " ", s).strip()


def test_the_study_page_states_the_run_comparison_and_the_model_at_threshold(
    page, login, client, auth, db, tiny_checkpoint
):
    from backend.models import Study, TrainingRun, Trial
    from backend.services.studies import stimuli

    ds, _ = make_dataset(db, n=16)
    runs = {}
    for method, name in (("pgd_at", "PGD-AT baseline"), ("sip_at", "SIP-AT strokes")):
        runs[method] = make_run(db, ds, tiny_checkpoint, name=name)
        db.get(TrainingRun, runs[method]).method = method
    db.commit()
    s = ready_study(client, auth["researcher"], db, [runs["pgd_at"], runs["sip_at"]],
                    num_random_images=14, epsilons_255=GRID,
                    exclusion={"same_answer_throughout": False})  # fmt: skip
    study = db.get(Study, s["id"])
    aa = {
        runs["pgd_at"]: [0.875, 0.5, 0.25, 0.125, 0.0],
        runs["sip_at"]: [1.0, 0.75, 0.5, 0.375, 0.125],
    }
    stimuli.record_model_autoattack(
        db, study,
        {rid: {"seed": rid, "points": _aa_points(a, 8), "warnings": []} for rid, a in aa.items()},
        settings={"attack": "AutoAttack", "version": "standard", "norm": "Linf",
                  "package": "pyautoattack 0.2.0", "attacks": ["apgd-ce", "fab-t", "square"]},
        n_images=8,
    )  # fmt: skip
    method_of = {rid: m for m, rid in runs.items()}
    device = {"screen_width": 1920, "screen_height": 1080, "window_width": 1400,
              "window_height": 900, "device_pixel_ratio": 1}  # fmt: skip
    rng = np.random.default_rng(4)
    for i in range(12):
        tok = client.post(f"/api/participate/links/{s['link_token']}/sessions",
                          json={"prolific_pid": f"pair{i}"}).json()["token"]  # fmt: skip
        client.post(f"/api/participate/{tok}/consent")
        client.post(f"/api/participate/{tok}/device", json=device)
        for t in client.get(f"/api/participate/{tok}/trials").json()["data"]:
            row = db.execute(select(Trial).where(Trial.public_id == t["id"])).scalar_one()
            e = row.epsilon * 255
            if row.phase == "main" and e < 30:  # a Weibull observer, slope 3
                th = THRESHOLDS[method_of[row.run_id]]
                p = 0.5 + 0.5 * -math.expm1(-math.log(2) * (e / th) ** 3) if e > 0 else 0.5
            else:
                p = 1.0  # practice and catch (32/255): always seen
            wrong = {"left": "right", "right": "left"}[row.correct_answer]
            answer = row.correct_answer if rng.random() < p else wrong
            body = {"answer": answer, "rt_ms": 700, "display_scale": 16}
            r = client.post(f"/api/participate/{tok}/trials/{t['id']}/answer", json=body)
            assert r.status_code == 200, r.text
        assert client.post(f"/api/participate/{tok}/complete").status_code == 200
    res = analysed_results(client, auth["researcher"], s["id"])
    (c,) = res["comparisons"]
    assert (c["run_a"]["run_id"], c["run_b"]["run_id"]) == (runs["pgd_at"], runs["sip_at"])
    assert c["claim"] and c["n_participants"] == 12
    assert "paired over the 12 participants who saw both runs" in c["statement"]
    assert [p["epsilon_255"] for p in c["points"]] == [2.0, 4.0, 8.0, 16.0]

    login(page, "researcher")
    page.goto(f"/#/studies/{s['id']}")
    page.wait_for_selector(".run-comparison .comparison-statement")
    box = page.locator(".run-comparison")
    assert box.get_attribute("data-shows") == c["shows"]
    assert _text(page.text_content(".comparison-statement")) == _text(c["statement"])
    t = c["threshold_ratio"]
    if t["value"] is not None:  # the sentence carries the ratio and its interval
        assert f"{t['value']:.2f} times as large" in c["statement"]
        assert "95 % CI" in c["statement"]
    rows = page.eval_on_selector_all(
        ".comparison-table tbody tr", "rs => rs.map(r => r.cells[0].textContent.trim())"
    )
    assert [float(v) for v in rows] == [2, 4, 8, 16]
    # AutoAttack beside PGD: its curve, its column, the attack and its images named
    assert page.locator(".study-plot .autoattack-point").count() == 2 * len(GRID)
    method = _text(page.text_content(".autoattack-method"))
    assert method.startswith("AutoAttack (standard, L∞, pyautoattack 0.2.0)"), method
    assert "the first 8 of the study's main images" in method
    cells = page.eval_on_selector_all(
        f".results-table[data-run='{runs['sip_at']}'] .model-aa", "cs => cs.map(c => c.textContent)"
    )
    assert cells == ["100.0%", "75.0%", "50.0%", "37.5%", "12.5%"]
    # the model at people's threshold, per run, as the API has it
    for run in res["runs"]:
        at = run["model_at_threshold"]
        assert at is not None, run["fit"]
        (aa_row,) = [x for x in at["curves"] if x["attack"] == "autoattack"]
        row = f".run-model-threshold[data-run='{run['run_id']}'] tr[data-attack=autoattack]"
        shown = _text(page.text_content(row))
        assert "AutoAttack (standard, L∞), 8 images" in shown
        if aa_row["accuracy"] is not None:
            assert f"{aa_row['accuracy'] * 100:.1f}%" in shown, shown
    # the SIP-AT run's own page: the same figure from this study
    page.goto(f"/#/runs/{runs['sip_at']}")
    page.wait_for_selector(".final-threshold .threshold-accuracy")
    panel = _text(page.text_content(".final-threshold"))
    assert "Robust accuracy at people's detection threshold" in panel
    assert s["name"] in panel and "AutoAttack (standard, L∞), 8 images" in panel
