"""Every time the API returns or exports carries its zone (UTC, "Z" or "+00:00"), on the
embedded SQLite database as on PostgreSQL: SQLite keeps no zone, so the timestamp columns
(backend/models.UtcDateTime) attach UTC when they read."""

from __future__ import annotations

import base64
import csv
import importlib
import inspect
import io
import pkgutil
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any, get_args

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from backend.models import Base, UtcDateTime
from tests.conftest import PASSWORDS, password_hash, run_migrations

TIME = re.compile(r"^\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d")
ZONED = re.compile(r"(Z|[+-]00:00)$")


def _times(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(where, text) of every string in a JSON value that reads as a time."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _times(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _times(v, f"{path}[{i}]")
    elif isinstance(value, str) and TIME.match(value):
        yield path, value


def test_every_timestamp_column_reads_back_in_utc():
    plain = [
        f"{t.name}.{c.name}"
        for t in Base.metadata.tables.values()
        for c in t.columns
        if isinstance(c.type, sa.DateTime)
        or (
            isinstance(c.type, sa.types.TypeDecorator)
            and not isinstance(c.type, UtcDateTime)
            and isinstance(c.type.impl, sa.DateTime)
        )
    ]
    assert plain == [], f"time columns that may read back without a zone: {plain}"


def test_utc_datetime_attaches_utc_and_converts_other_zones():
    t = UtcDateTime()
    naive = datetime(2026, 12, 7, 8, 28, 30)
    berlin = datetime(2026, 12, 7, 9, 28, 30, tzinfo=timezone(timedelta(hours=1)))
    dialect = sa.create_engine("sqlite://").dialect
    assert t.process_result_value(naive, dialect) == naive.replace(tzinfo=UTC)
    assert t.process_result_value(berlin, dialect).tzinfo is UTC  # type: ignore[union-attr]
    assert t.process_bind_param(berlin, dialect) == naive.replace(tzinfo=UTC)


@pytest.fixture()
def sqlite_api(tmp_path, client):
    """The app's routes on a fresh SQLite database (the embedded demo's), seeded with one of
    each object that has a time; yields (client, researcher headers, ids)."""
    from backend.db import make_engine
    from backend.deps import get_db
    from backend.main import app
    from backend.models import (
        Dataset,
        DatasetClass,
        Image,
        MaskSet,
        ParticipantSession,
        Response,
        Stimulus,
        Study,
        TrainingRun,
        Trial,
        User,
    )

    url = f"sqlite:///{tmp_path / 'app.db'}"
    run_migrations(url)
    engine = make_engine(url)
    make = sessionmaker(bind=engine, expire_on_commit=False)
    ids: dict[str, int] = {}
    with make() as db:
        for role in ("admin", "researcher"):
            db.add(User(username=role, password_hash=password_hash(PASSWORDS[role]), role=role))
        ds = Dataset(name="zoned")
        ds.classes = [DatasetClass(name="c", index=0)]
        db.add(ds)
        db.flush()
        image = Image(
            dataset_id=ds.id,
            class_id=ds.classes[0].id,
            filename="c/0.png",
            storage_key="x/0.png",
            width=8,
            height=8,
            mode="L",
            sha256="0" * 64,
        )
        db.add(image)
        mask_set = MaskSet(dataset_id=ds.id, name="m", hash="a" * 64, filter={})
        run = TrainingRun(
            name="r",
            dataset_id=ds.id,
            method="sip_at",
            config={},
            state="succeeded",
            started_at=datetime.now(UTC),
            finished_at=datetime.now(UTC),
        )
        db.add_all([mask_set, run])
        study = Study(
            name="s",
            design="2afc",
            config={
                "exclusion": {"min_catch_accuracy": 0, "too_fast_ms": 0, "max_too_fast_fraction": 1}
            },
            link_token="t" * 16,
        )
        db.add(study)
        db.flush()
        stim = Stimulus(
            study_id=study.id,
            public_id="p1",
            source_image_id=image.id,
            epsilon=0.1,
            storage_key="s/1.png",
            sha256="0" * 64,
        )
        session = ParticipantSession(study_id=study.id, token="k" * 16, participant_key="pk")
        db.add_all([stim, session])
        db.flush()
        trial = Trial(
            session_id=session.id,
            index=0,
            public_id="t1",
            phase="main",
            left_stimulus_id=stim.id,
            correct_answer="left",
            epsilon=0.1,
        )
        db.add(trial)
        db.flush()
        db.add(
            Response(
                trial_id=trial.id,
                answer="left",
                correct=True,
                rt_ms=500.0,
                shown_at=datetime.now(UTC),
            )
        )
        db.commit()
        ids = {"dataset": ds.id, "mask_set": mask_set.id, "run": run.id, "study": study.id}

    def sqlite_db() -> Iterator[Session]:
        with make() as s:
            yield s

    app.dependency_overrides[get_db] = sqlite_db
    try:
        r = client.post(
            "/api/auth/login",
            json={"username": "researcher", "password": PASSWORDS["researcher"]},
        )
        assert r.status_code == 200, r.text
        headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
        yield client, headers, ids, make
    finally:
        app.dependency_overrides.pop(get_db, None)
        engine.dispose()


def test_list_and_detail_times_carry_utc_on_sqlite(sqlite_api):
    client, headers, ids, _ = sqlite_api
    paths = [
        "/api/datasets",
        f"/api/datasets/{ids['dataset']}",
        f"/api/datasets/{ids['dataset']}/mask-sets",
        f"/api/mask-sets/{ids['mask_set']}",
        "/api/runs",
        f"/api/runs/{ids['run']}",
        "/api/studies",
        f"/api/studies/{ids['study']}",
        "/api/auth/me",
    ]
    seen = 0
    for path in paths:
        r = client.get(path, headers=headers)
        assert r.status_code == 200, (path, r.text)
        for where, text in _times(r.json()):
            seen += 1
            assert ZONED.search(text), f"{path} {where}: {text} has no zone"
    assert seen >= len(paths) - 1


def test_trials_csv_times_carry_utc_on_sqlite(sqlite_api):
    from backend.models import Study
    from backend.services.studies.analysis import trials_csv

    _, _, ids, make = sqlite_api
    with make() as db:
        text = trials_csv(db, db.get_one(Study, ids["study"]))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows
    for row in rows:
        for column in ("shown_at", "answered_at"):
            assert TIME.match(row[column]) and ZONED.search(row[column]), (column, row[column])


# ---------------------------------------------------------------- every route with a time


def _types_in(t: Any, seen: set[Any]) -> Iterator[Any]:
    """t and every type inside it: the arguments of list[...] / X | None, a model's fields."""
    from pydantic import BaseModel

    if isinstance(t, type):
        if t in seen:
            return
        seen.add(t)
    yield t
    for arg in get_args(t):
        yield from _types_in(arg, seen)
    if isinstance(t, type) and issubclass(t, BaseModel):
        for field in t.model_fields.values():
            yield from _types_in(field.annotation, seen)


def _has_time(t: Any) -> bool:
    return any(x in (datetime, date) for x in _types_in(t, set()))


def timed_schemas() -> set[type]:
    """Every Pydantic model in backend/schemas with a time field (its own or a nested one's)."""
    from pydantic import BaseModel

    import backend.schemas as schemas

    found = set()
    for info in pkgutil.iter_modules(schemas.__path__):
        module = importlib.import_module(f"{schemas.__name__}.{info.name}")
        for obj in vars(module).values():
            if (
                inspect.isclass(obj)
                and issubclass(obj, BaseModel)
                and obj.__module__ == module.__name__
                and _has_time(obj)
            ):
                found.add(obj)
    return found


def timed_routes() -> dict[str, type]:
    """{"METHOD /api/path": response model} of every API route whose answer is, or holds, a
    model of timed_schemas()."""
    from fastapi.routing import APIRoute

    from backend.main import listed_routers

    timed = timed_schemas()
    routes = {}
    for router in listed_routers("ROUTERS"):
        for route in router.routes:
            if not isinstance(route, APIRoute) or route.response_model is None:
                continue
            inside = set(_types_in(route.response_model, set()))
            if inside & timed:
                for method in route.methods:
                    routes[f"{method} /api{route.path}"] = route.response_model
    return routes


# A route that changes things and answers with a model that a route called below answers with
# too (built the same way, from the same rows): the route it shares the model with.
SAME_MODEL_AS = {
    "POST /api/datasets/import": "PATCH /api/datasets/{dataset_id}",
    "POST /api/runs/inequality": "GET /api/runs/inequality/{evaluation_id}",
    "POST /api/datasets/{dataset_id}/mask-sets": "GET /api/datasets/{dataset_id}/mask-sets",
    "POST /api/reviews/bulk": "POST /api/reviews/{annotation_id}",
    "POST /api/runs": "GET /api/runs",
    "POST /api/runs/{run_id}/retry": "POST /api/runs/{run_id}/cancel",
    "POST /api/studies": "GET /api/studies/{study_id}",
    "POST /api/studies/{study_id}/generate": "GET /api/studies/{study_id}",
    "POST /api/studies/{study_id}/open": "GET /api/studies/{study_id}",
    "POST /api/studies/{study_id}/close": "GET /api/studies/{study_id}",
    "POST /api/sweeps": "GET /api/sweeps",
}


def _model_family(model: type) -> set[type]:
    """The timed models a response model holds (a list model's items, nested models), each
    as its first timed ancestor (a freeze's answer is a mask set with a sentence)."""
    own = {
        t for t in timed_schemas() if any(_own_time(f.annotation) for f in t.model_fields.values())
    }
    held = {t for t in _types_in(model, set()) if t in own}
    return {[base for base in t.__mro__ if base in own][-1] for t in held}


def _own_time(t: Any) -> bool:
    """A field's type is a time, or a list / optional of times (not a model holding one)."""
    return t in (datetime, date) or any(_own_time(a) for a in get_args(t))


def test_every_route_with_a_time_answers_with_its_zone_on_sqlite(sqlite_api, monkeypatch):
    """Walks backend/schemas for models with a time field and the API's routes for the ones
    that answer with such a model; calls each on the embedded database (a write route that
    answers with the model of a route called here stands with it) and checks every time in
    every answer carries its offset. A new route with a time fails here until it is called."""
    from backend.core.config import get_settings
    from backend.models import (
        Annotation,
        AnnotationRevision,
        Image,
        InequalityEvaluation,
        RunBatch,
        RunEpoch,
        Sweep,
        TrainingRun,
        User,
        WorkerPresence,
    )
    from tests.backend.test_annotation import mask_png

    client, headers, ids, make = sqlite_api
    # the mask save opens its own session (no dependency on its hot path): the same database
    monkeypatch.setattr("backend.routers.annotate.get_sessionmaker", lambda: make)
    now = datetime.now(UTC)
    training_queue = get_settings().training_queue
    with make() as db:
        annotator = User(
            username="annotator",
            password_hash=password_hash(PASSWORDS["annotator"]),
            role="annotator",
        )
        db.add(annotator)
        db.flush()
        first = db.scalars(sa.select(Image).order_by(Image.id)).first()
        assert first is not None
        image_id = first.id
        # a submitted mask of another image (to review) and this annotator's PUT on the first
        other = Image(
            dataset_id=first.dataset_id, class_id=first.class_id, filename="c/1.png",
            storage_key="x/1.png", width=8, height=8, mode="L", sha256="1" * 64,
        )  # fmt: skip
        db.add(other)
        db.flush()
        second = other.id
        ann = Annotation(
            image_id=second, annotator_id=annotator.id, status="submitted", latest_revision=1,
            submitted_at=now,
        )  # fmt: skip
        db.add(ann)
        db.flush()
        db.add(
            AnnotationRevision(
                annotation_id=ann.id, revision=1, save_id="s1", mask_bytes=mask_png(
                    np.ones((8, 8), bool)), width=8, height=8, area=64, sha256="2" * 64,
            )
        )  # fmt: skip
        queued = TrainingRun(
            name="q", dataset_id=ids["dataset"], method="pgd_at", config={}, state="queued"
        )
        db.add(queued)
        db.get_one(TrainingRun, ids["run"]).checkpoint_key = "runs/x/out"  # a study's source
        db.add_all(
            [
                RunEpoch(run_id=ids["run"], epoch=1, metrics={"train_loss": 1.0}),
                RunBatch(run_id=ids["run"], step=1, epoch=1, loss=1.0, accuracy=0.5),
                WorkerPresence(hostname="w1", queues=[training_queue], job=None),
            ]
        )
        sweep = Sweep(dataset_id=ids["dataset"], base={}, axes=[], seeds=[0], baseline=None)
        evaluation = InequalityEvaluation(
            run_ids=[ids["run"]], run_key=str(ids["run"]), dataset_id=ids["dataset"],
            n_requested=10, common_set=False, state="queued",
        )  # fmt: skip
        db.add_all([sweep, evaluation])
        db.commit()
        more = {
            "image_id": image_id, "annotation_id": ann.id, "queued": queued.id,
            "sweep_id": sweep.id, "evaluation_id": evaluation.id, "annotator": annotator.id,
        }  # fmt: skip

    def sign_in(role: str) -> dict[str, str]:
        r = client.post("/api/auth/login", json={"username": role, "password": PASSWORDS[role]})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    admin, annotator_headers = sign_in("admin"), sign_in("annotator")
    png = base64.b64encode(mask_png(np.eye(8, dtype=bool))).decode()
    # route -> (headers, path, body)
    calls: dict[str, tuple[dict[str, str], str, Any]] = {
        "POST /api/auth/login": (
            {}, "/api/auth/login", {"username": "researcher", "password": PASSWORDS["researcher"]}
        ),
        "GET /api/auth/me": (headers, "/api/auth/me", None),
        "PUT /api/annotate/images/{image_id}/mask": (
            annotator_headers, f"/api/annotate/images/{more['image_id']}/mask",
            {"save_id": "z1", "mask_png_base64": png, "width": 8, "height": 8, "active_ms": 5},
        ),
        "GET /api/datasets": (headers, "/api/datasets", None),
        "GET /api/datasets/{dataset_id}": (headers, f"/api/datasets/{ids['dataset']}", None),
        "PATCH /api/datasets/{dataset_id}": (
            headers, f"/api/datasets/{ids['dataset']}", {"description": "zoned"}
        ),
        "GET /api/runs/inequality": (headers, f"/api/runs/inequality?run_ids={ids['run']}", None),
        "GET /api/runs/inequality/{evaluation_id}": (
            headers, f"/api/runs/inequality/{more['evaluation_id']}", None
        ),
        "GET /api/datasets/{dataset_id}/mask-sets": (
            headers, f"/api/datasets/{ids['dataset']}/mask-sets", None
        ),
        "GET /api/mask-sets/{mask_set_id}": (headers, f"/api/mask-sets/{ids['mask_set']}", None),
        "GET /api/reviews": (headers, "/api/reviews?status=submitted", None),
        "POST /api/reviews/{annotation_id}": (
            headers, f"/api/reviews/{more['annotation_id']}", {"decision": "accept"}
        ),
        "GET /api/runs": (headers, "/api/runs", None),
        "GET /api/runs/compare": (headers, f"/api/runs/compare?ids={ids['run']}", None),
        "GET /api/runs/{run_id}": (headers, f"/api/runs/{ids['run']}", None),
        "POST /api/runs/{run_id}/cancel": (headers, f"/api/runs/{more['queued']}/cancel", None),
        "GET /api/studies": (headers, "/api/studies", None),
        "GET /api/studies/source-runs": (headers, "/api/studies/source-runs", None),
        "GET /api/studies/{study_id}": (headers, f"/api/studies/{ids['study']}", None),
        "GET /api/sweeps": (headers, "/api/sweeps", None),
        "GET /api/sweeps/{sweep_id}": (headers, f"/api/sweeps/{more['sweep_id']}", None),
        "GET /api/users": (admin, "/api/users", None),
        "POST /api/users": (
            admin, "/api/users",
            {"username": "newcomer", "password": "a long zoned passphrase 42", "role": "annotator"},
        ),
        "PATCH /api/users/{user_id}": (
            admin, f"/api/users/{more['annotator']}", {"role": "annotator"}
        ),
        "GET /api/queue": (headers, "/api/queue", None),
    }  # fmt: skip

    routes = timed_routes()
    assert len(routes) >= 30, sorted(routes)
    unaccounted = set(routes) - set(calls) - set(SAME_MODEL_AS)
    assert not unaccounted, (
        f"routes answering with a time that this test does not call: {unaccounted}"
    )
    for route, twin in SAME_MODEL_AS.items():
        if route in routes:
            assert twin in calls and _model_family(routes[route]) <= _model_family(routes[twin]), (
                route, twin,
            )  # fmt: skip
    for route, (who, path, body) in calls.items():
        if route not in routes:
            continue  # the route left, or no longer answers with a time
        method = route.split(" ", 1)[0]
        r = client.request(method, path, headers=who, json=body)
        assert r.status_code in (200, 201), (route, r.status_code, r.text)
        times = list(_times(r.json()))
        assert times, f"{route}: no time in its answer to check: {r.text[:300]}"
        for where, text in times:
            assert ZONED.search(text), f"{route} {where}: {text} has no zone"
