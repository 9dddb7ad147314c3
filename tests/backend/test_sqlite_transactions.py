"""SQLite transactions (backend/db.py): reads never take the write lock, a transaction that
read and then writes does not fail when someone else committed in between, and
with_for_update serialises a read-modify-write as it does on PostgreSQL."""

from __future__ import annotations

import threading
import time

import sqlalchemy as sa
from sqlalchemy.orm import Session

from backend.db import make_engine
from backend.models import User
from tests.conftest import run_migrations


def _engine(tmp_path):
    url = f"sqlite:///{tmp_path / 'app.db'}"
    run_migrations(url)
    engine = make_engine(url)
    with Session(engine) as db:
        db.add(User(username="u", password_hash="x", role="annotator"))
        db.commit()
    return engine


def test_a_read_runs_while_another_transaction_holds_the_write_lock(tmp_path):
    engine = _engine(tmp_path)
    with Session(engine) as writer, Session(engine) as reader:
        writer.get_one(User, 1).role = "researcher"
        writer.flush()  # the write lock is taken and held until commit
        t0 = time.monotonic()
        assert reader.scalar(sa.select(User.role)) == "annotator"  # the committed value
        reader.commit()
        assert time.monotonic() - t0 < 0.5
        writer.commit()
    engine.dispose()


def test_read_then_write_survives_a_commit_in_between(tmp_path):
    engine = _engine(tmp_path)
    with Session(engine) as a, Session(engine) as b:
        user = a.get_one(User, 1)  # a's transaction has read
        b.add(User(username="v", password_hash="x", role="annotator"))
        b.commit()  # ...and the database changed since
        user.role = "admin"
        a.commit()  # a plain deferred transaction would fail here: "database is locked"
    with Session(engine) as c:
        assert c.get_one(User, 1).role == "admin"
        assert c.scalar(sa.select(sa.func.count()).select_from(User)) == 2
    engine.dispose()


def test_with_for_update_serialises_read_modify_write(tmp_path):
    engine = _engine(tmp_path)
    with Session(engine) as db:
        db.get_one(User, 1).username = "0"
        db.commit()

    def increment() -> None:
        with Session(engine) as db:
            user = db.scalar(sa.select(User).where(User.id == 1).with_for_update())
            assert user is not None
            value = int(user.username)
            time.sleep(0.01)  # widen the window a lost update would need
            user.username = str(value + 1)
            db.commit()

    threads = [threading.Thread(target=increment) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with Session(engine) as db:
        assert db.get_one(User, 1).username == "20"
    engine.dispose()
