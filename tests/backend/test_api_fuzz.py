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

from tests.conftest import seed_live_world

pytestmark = pytest.mark.slow

ROLES = ("anonymous", "annotator", "researcher", "admin")
CHECKS = (
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
)
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "12"))


@pytest.fixture(scope="module")
def world(live_server) -> dict[str, dict[str, str]]:
    """Accounts of every role and a small dataset; the headers each caller sends."""
    return seed_live_world(live_server, "fuzz")["headers"]


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
        try:
            case.call_and_validate(base_url=live_server, headers=world[role], checks=CHECKS)
        except Exception as exc:
            exc.add_note(f"sent as: {role}")
            raise
