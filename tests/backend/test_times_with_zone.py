"""Every time the API returns or exports carries its zone (UTC, "Z" or "+00:00"), on the
embedded SQLite database as on PostgreSQL: SQLite keeps no zone, so the timestamp columns
(backend/models.UtcDateTime) attach UTC when they read."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

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
