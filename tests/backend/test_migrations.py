"""The Alembic chain builds the whole schema on an empty database, and agrees with the models."""

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from backend.models import Base
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
