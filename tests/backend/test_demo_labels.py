"""The demo's label study (issue 26, backend/demo_labels.py): simulated observers take it
through a real server's participant API, and the run's human-validated robust accuracy lies
where its definition puts it (between AutoAttack's figure and that figure plus every fooled
image)."""

from __future__ import annotations

from backend.db import get_sessionmaker
from backend.demo_content import DemoApi
from backend.demo_labels import LABEL_SIMULATED, label_study_body, simulate_label_participants
from tests.backend.study_support import make_dataset, make_run
from tests.conftest import PASSWORDS, seed_live_world


def test_simulated_observers_populate_a_label_study(live_server, tiny_checkpoint):
    from backend.core.storage import get_storage
    from worker.study_tasks import generate_stimuli

    seed_live_world(live_server, "demo-labels")
    with get_sessionmaker()() as db:
        dataset_id, _ = make_dataset(db, n=14, name="stripes-demo")
        run_id = make_run(db, dataset_id, tiny_checkpoint)
    api = DemoApi(live_server, "researcher", PASSWORDS["researcher"])
    body = {**label_study_body([run_id]), "epsilons_255": [8, 32], "catch_trials": 1}
    study = api.post("/api/studies", body)
    with get_sessionmaker()() as db:
        generate_stimuli(db, get_storage(), study["id"])
    study = api.post(f"/api/studies/{study['id']}/open")
    assert simulate_label_participants(live_server, api, study) == len(LABEL_SIMULATED)
    # a second call (a second `make demo`) finds the sessions and makes none
    assert simulate_label_participants(live_server, api, study) == 0
    entries = api.get(f"/api/runs/{run_id}/results")["human_validated_robust_accuracy"]
    assert [e["epsilon_255"] for e in entries] == [8, 32]
    from backend.models import Study
    from backend.services.studies.labels import label_results

    with get_sessionmaker()() as db:
        res = label_results(db, db.get(Study, study["id"]))
    # every simulated session completed; the exclusion rules judged them as any others
    assert all(x["reason"] != "did not complete the study" for x in res["excluded"])
    assert res["participants"]["included"] + len(res["excluded"]) == len(LABEL_SIMULATED)
    for e in entries:
        assert e["participants"] == res["participants"]["included"] >= 1
        assert e["n_images"] == 6
        assert e["autoattack_robust_accuracy"] - 1e-9 <= (e["value"] or 0) <= 1
