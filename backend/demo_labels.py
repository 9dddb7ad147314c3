"""The demo's label study (issue 26): its design, and simulated participants answering it
through the participant API, so that the study page and the run page show human-validated
robust accuracy. The demo's build (backend/demo_content.build) makes the study with
`label_study_body` and calls `simulate_label_participants` once its stimuli are made.

The observer model names the image's true class with a probability that falls with the
image's epsilon (0.97 on clean images, 0.97 - epsilon/64 on adversarial ones, at least 0.05),
otherwise another class, or "can't tell" one time in four. It recognises each image it is
served by its bytes among the study's stimuli (the researcher's stimulus listing), the way a
person recognises what the image shows: the participant API itself says nothing of it.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from backend.demo_participants import participant

LABEL_STUDY = "demo: what does the image show?"
LABEL_SIMULATED = ("label-sim-1", "label-sim-2", "label-sim-3", "label-sim-4", "label-sim-5")


def label_study_body(run_ids: list[int]) -> dict[str, Any]:
    """A small label study of these runs, as POST /api/studies takes it."""
    return {
        "name": LABEL_STUDY,
        "design": "label",
        "run_ids": run_ids,
        "images_per_class": 3,
        "epsilons_255": [8, 32],
        "practice_trials": 2,
        "catch_trials": 2,
        "seed": 0,
    }


def p_true_class(eps_255: float) -> float:
    """The observer's chance of naming the true class of an image at this epsilon."""
    return float(np.clip(0.97 - eps_255 / 64, 0.05, 0.97))


def _stimuli_by_bytes(researcher: Any, study_id: int) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    offset = 0
    while True:
        page = researcher.get(f"/api/studies/{study_id}/stimuli", limit=200, offset=offset)
        for st in page["data"]:
            data = researcher.call("GET", st["image_url"]).content
            out[hashlib.sha256(data).hexdigest()] = st
        offset += len(page["data"])
        if not page["data"] or offset >= page.get("count", offset):
            return out


def simulate_label_participants(base: str, researcher: Any, study: dict[str, Any]) -> int:
    """Each of LABEL_SIMULATED takes the open label study through the participant API;
    returns how many sessions it completed (none when the study has sessions already)."""
    detail = researcher.get(f"/api/studies/{study['id']}")
    if detail["num_sessions"]:  # simulated before (a second `make demo`)
        return 0
    cfg = detail["config"]
    classes = len(cfg["classes"])
    truth = {int(k): int(v) for k, v in cfg["true_classes"].items()}
    known = _stimuli_by_bytes(researcher, study["id"])
    made = 0
    for k, pid in enumerate(LABEL_SIMULATED):
        rng = np.random.default_rng(100 + k)
        with participant(base, detail, pid) as who:
            if who is None:
                continue
            for trial in who.trials():
                st = known[hashlib.sha256(who.image(trial["images"][0])).hexdigest()]
                true = truth[int(st["source_image_id"])]
                if rng.random() < p_true_class(float(st["epsilon_255"])):
                    answer = str(true)
                elif rng.random() < 0.25 or classes < 2:
                    answer = "none"
                else:
                    answer = str(int(rng.choice([c for c in range(classes) if c != true])))
                who.answer(trial, answer, float(rng.uniform(700, 2500)))
        made += 1
    return made
