"""One unit for people: the run form's refusals name budgets in grey levels (x/255), as the
form takes them, while the API keeps pixel units (the stored config, the defaults)."""

from __future__ import annotations

import pytest

from runconfig import ConfigError, TrainConfig, grey_levels


@pytest.mark.parametrize(
    ("pixels", "read"),
    [(8 / 255, "8/255"), (2 / 255, "2/255"), (0.0313725, "8/255"), (25.5 / 255, "25.5/255"),
     (0.5, "127.5/255"), (-5 / 255, "-5/255"), (0.0, "0/255"), (1e-9, "0/255")],
)  # fmt: skip
def test_grey_levels_round_for_reading(pixels, read):
    assert grey_levels(pixels) == read


@pytest.mark.parametrize("field", ["eps", "alpha", "part_eps_low"])
def test_budget_errors_speak_grey_levels(field):
    with pytest.raises(ConfigError) as e:
        TrainConfig.from_dict({field: -5 / 255})
    assert e.value.field == field
    assert e.value.message == "must be between 0/255 and 255/255; got -5/255"
    assert "pixel units" not in str(e.value) and "0.0196" not in str(e.value)


def test_part_low_budget_and_eval_grid_errors_speak_grey_levels():
    with pytest.raises(ConfigError) as e:
        TrainConfig.from_dict({"eps": 4 / 255, "part_eps_low": 6 / 255})
    assert e.value.message == "must not exceed eps (4/255); got 6/255"
    with pytest.raises(ConfigError) as e:
        TrainConfig.from_dict({"eval_eps": [2 / 255, 300 / 255]})
    assert e.value.message == "every value must be between 0/255 and 255/255; got 300/255"


def test_the_launch_refusal_names_the_budget_in_grey_levels(client, seeded, auth, db):
    r = client.post(
        "/api/runs",
        headers=auth["researcher"],
        json={"dataset_id": seeded["dataset_id"], "eps": -5 / 255, "alpha": 2.0, "momentum": 3},
    )
    assert r.status_code == 422
    errors = {e["field"]: e["message"] for e in r.json()["errors"]}
    assert errors["eps"] == "must be between 0/255 and 255/255; got -5/255"
    assert errors["alpha"] == "must be between 0/255 and 255/255; got 510/255"
    assert errors["momentum"] == "must be between 0 and 1; got 3"
    # the API itself stays in pixel units
    defaults = client.get("/api/runs/defaults", headers=auth["researcher"]).json()["defaults"]
    assert defaults["eps"] == pytest.approx(8 / 255) and defaults["alpha"] == pytest.approx(2 / 255)
