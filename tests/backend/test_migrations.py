"""The Alembic chain builds the whole schema on an empty database, and agrees with the models."""

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.orm import Session

from backend.models import Base, Dataset, MaskSet
from tests.conftest import run_migrations


def _diff(url: str) -> list:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, Base.metadata)
        tables = set(sa.inspect(conn).get_table_names())
    engine.dispose()
    assert {t.name for t in Base.metadata.sorted_tables} <= tables
    return diff


def test_sqlite_upgrade_head_matches_models(tmp_path):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    run_migrations(url)
    assert _diff(url) == []


def test_postgresql_upgrade_head_matches_models(pg_database):
    # pg_database was emptied and upgraded to head by the fixture.
    assert _diff(pg_database) == []


def test_downgrade_to_base_and_back_on_postgresql(pg_database):
    from alembic import command
    from alembic.config import Config

    from tests.conftest import ROOT

    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.attributes["url"] = pg_database
    cfg.attributes["configure_logger"] = False
    command.downgrade(cfg, "base")
    engine = sa.create_engine(pg_database)
    with engine.connect() as conn:
        assert set(sa.inspect(conn).get_table_names()) <= {"alembic_version"}
    engine.dispose()
    command.upgrade(cfg, "head")
    assert _diff(pg_database) == []


def test_0010_renames_duplicate_mask_set_names_before_making_them_unique(tmp_path):
    from alembic import command
    from alembic.config import Config

    from tests.conftest import ROOT

    url = f"sqlite:///{tmp_path / 'dupes.db'}"
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.attributes["url"] = url
    cfg.attributes["configure_logger"] = False
    command.upgrade(cfg, "0009")
    engine = sa.create_engine(url)
    with Session(engine) as db:  # the tables 0010 leaves as they are, and mask_sets' columns
        # datasets' columns of 0009 only (a later revision adds some): a Core insert of these
        db.execute(sa.insert(Dataset.__table__), [{"id": 1, "name": "d"}, {"id": 2, "name": "e"}])
        db.flush()
        for i, (dataset_id, name) in enumerate(
            [(1, "a"), (1, "a"), (1, "a (2)"), (1, "a"), (2, "a"), (1, "b")], start=1
        ):
            db.add(MaskSet(id=i, dataset_id=dataset_id, name=name, hash=f"{i:064d}", filter={}))
            db.flush()
        db.commit()
    command.upgrade(cfg, "head")
    with engine.connect() as conn:
        names = conn.execute(sa.text("SELECT id, name FROM mask_sets ORDER BY id")).all()
    engine.dispose()
    assert [n for _, n in names] == ["a", "a (3)", "a (2)", "a (4)", "a", "b"]
