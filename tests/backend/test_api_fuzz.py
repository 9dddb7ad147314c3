"""Schemathesis over the whole API, as every kind of caller, against the real server on
PostgreSQL: no request may get a 5xx, and every response must match what the OpenAPI
document declares (status code, content type, body schema)."""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.backend.study_support import (
    make_dataset,
    make_run,
    ready_study,
)
from tests.conftest import seed_live_world

pytestmark = pytest.mark.slow

# "participant": a consented session of an open study, its tokens in the participation routes
ROLES = ("anonymous", "annotator", "researcher", "admin", "participant")
CHECKS = (
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
)
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "20"))


@pytest.fixture(scope="module")
def world(live_server, tiny_checkpoint) -> dict[str, dict[str, str]]:
    """Accounts of every role, a small dataset and an open study with one consented
    participant; the headers each caller sends, and (under "tokens") the participant's
    path parameters."""
    import httpx

    from backend.db import get_sessionmaker

    seeded = seed_live_world(live_server, "fuzz")
    headers = seeded["headers"]
    with get_sessionmaker()() as db, httpx.Client(base_url=live_server) as client:
        dataset_id, _ = make_dataset(db, n=16, name="fuzz-study")
        run_id = make_run(db, dataset_id, tiny_checkpoint)
        study = ready_study(
            client, headers["researcher"], db, [run_id], name="fuzzed", num_random_images=8
        )
        link = study["link_token"]
        r = client.post(f"/api/participate/links/{link}/sessions", json={"prolific_pid": "fuzz"})
        assert r.status_code == 201, r.text
        token = r.json()["token"]
        assert client.post(f"/api/participate/{token}/consent").status_code == 200
    return {**headers, "participant": {}, "tokens": {"link_token": link, "session_token": token}}


def _openapi() -> dict:
    from backend.main import create_app

    return create_app().openapi()


# The document the server serves (/openapi.json), built from the same app
schema = schemathesis.openapi.from_dict(_openapi())


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_no_5xx_and_every_answer_is_as_documented(case, world, live_server):
    """Each generated request is sent once as every kind of caller."""
    for role in ROLES:
        if case.path in ("/api/auth/logout", "/api/auth/sign-out-everywhere") or (
            role == "admin"
            and case.path in ("/api/users/{user_id}", "/api/users/{user_id}/sign-out-everywhere")
        ):
            continue  # would end the fuzzing accounts' sessions or deactivate them
        sent = case.path_parameters
        if role == "participant":
            if not case.path.startswith("/api/participate/"):
                continue  # elsewhere a participant is an anonymous caller
            # the real study's and session's tokens (trial and stimulus ids stay generated)
            tokens = {k: v for k, v in world["tokens"].items() if k in (sent or {})}
            case.path_parameters = {**(sent or {}), **tokens}
        try:
            case.call_and_validate(base_url=live_server, headers=world[role], checks=CHECKS)
        except Exception as exc:
            exc.add_note(f"sent as: {role}")
            raise
        finally:
            case.path_parameters = sent
