"""Engine and sessions: SQLite (demo, fast unit tests) and PostgreSQL share one code path."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker

from backend.core.config import get_settings

# the statements that need SQLite's write lock (the first one of a transaction takes it)
_WRITES = frozenset(
    {"INSERT", "UPDATE", "DELETE", "REPLACE", "SAVEPOINT", "CREATE", "DROP", "ALTER"}
)
_TX = "sqlite_tx"  # Connection.info key: "read" or "write" while a transaction is open


def _take_write_lock(conn: Connection) -> None:
    """Turn this connection's read transaction into a write transaction.

    A deferred SQLite transaction that has read cannot safely start writing: if another
    connection committed since its first read, the write fails at once ("database is
    locked", SQLITE_BUSY_SNAPSHOT) instead of waiting. So the read transaction, which has
    written nothing, is committed and an IMMEDIATE one begins, waiting (busy_timeout) for the
    write lock. What was read before is then as current as under PostgreSQL's READ
    COMMITTED; a read that must not change before the write says so with
    `select(...).with_for_update()` (or lock_for_write), which takes the lock first.
    """
    if conn.info.get(_TX) != "read":
        return
    raw = conn.connection.dbapi_connection
    assert raw is not None
    raw.execute("COMMIT")
    raw.execute("BEGIN IMMEDIATE")
    conn.info[_TX] = "write"


def lock_for_write(db: Session) -> None:
    """Serialise what follows with every other writer, until the transaction ends: on SQLite
    by taking the database's write lock now (before the reads that decide the write). On
    PostgreSQL a caller locks rows (with_for_update) or takes an advisory lock instead."""
    if db.get_bind().dialect.name == "sqlite":
        _take_write_lock(db.connection())


def _install_sqlite_transactions(engine: Engine) -> None:
    """Transactions on SQLite begin deferred: a read takes no lock (WAL lets it run beside a
    writer), and the first write of a transaction takes the write lock (_take_write_lock),
    held until commit. Writers queue on busy_timeout instead of failing."""

    # pysqlite's own transaction handling must be off for the BEGINs here to be ours.
    @event.listens_for(engine, "connect", insert=True)
    def _autocommit_off(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        dbapi_conn.isolation_level = None

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn):  # type: ignore[no-untyped-def]
        conn.exec_driver_sql("BEGIN")
        conn.info[_TX] = "read"

    @event.listens_for(engine, "before_cursor_execute")
    def _before_execute(conn, _cursor, statement, *_args):  # type: ignore[no-untyped-def]
        words = statement.lstrip().split(None, 1)
        if words and words[0].upper() in _WRITES:
            _take_write_lock(conn)

    @event.listens_for(engine, "commit")
    @event.listens_for(engine, "rollback")
    def _end(conn):  # type: ignore[no-untyped-def]
        conn.info.pop(_TX, None)


@event.listens_for(Session, "do_orm_execute")
def _for_update_locks_sqlite(state: ORMExecuteState) -> None:
    """`with_for_update()` means "nobody changes this before I write": SQLite has no row
    locks, so there it takes the write lock before the read."""
    if getattr(state.statement, "_for_update_arg", None) is not None:
        lock_for_write(state.session)


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        # Many annotators at once: a pooled connection per request thread (SQLite connections
        # are cheap) so requests wait for the database, not for the pool.
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 60},
            pool_size=64,
            max_overflow=64,
        )
        _install_sqlite_transactions(engine)
        return engine
    engine = create_engine(url, pool_size=20, max_overflow=40)
    _install_epoch_ping(engine)
    return engine


# Connection.info key: the auth epoch (models.AuthEpoch) read as the connection was taken
# from the pool, or None where it could not be read (a database not migrated yet)
AUTH_EPOCH = "auth_epoch"
_EPOCH_QUERY = "SELECT value FROM auth_epoch WHERE id = 1"


def _install_epoch_ping(engine: Engine) -> None:
    """Each checkout from the pool reads the auth epoch in one round trip, outside any
    transaction. It is also the pool's ping (instead of pool_pre_ping's SELECT 1): a
    connection the server dropped (a restart) fails it, and the pool takes a fresh one.
    A request that finds its login kept in memory then needs no query to trust it
    (backend/services/logins.py, current_login)."""

    @event.listens_for(engine, "checkout")
    def _read_epoch(dbapi_conn, record, _proxy):  # type: ignore[no-untyped-def]
        was_autocommit = dbapi_conn.autocommit
        dbapi_conn.autocommit = True
        try:
            row = dbapi_conn.execute(_EPOCH_QUERY).fetchone()
        except engine.dialect.loaded_dbapi.Error as exc:
            dbapi = engine.dialect.loaded_dbapi
            if dbapi_conn.closed or isinstance(exc, (dbapi.OperationalError, dbapi.InterfaceError)):
                raise DisconnectionError(str(exc)) from exc
            row = None  # no auth_epoch table (yet): logins are looked up every time
        finally:
            if not dbapi_conn.closed:
                dbapi_conn.autocommit = was_autocommit
        record.info[AUTH_EPOCH] = None if row is None else int(row[0])


def auth_epoch(db: Session) -> int | None:
    """The auth epoch read when this session's connection was taken from the pool (None on
    SQLite, or where it could not be read)."""
    value = db.connection().info.get(AUTH_EPOCH)
    return value if isinstance(value, int) else None


@lru_cache
def get_engine() -> Engine:
    return make_engine(get_settings().database_url)


@lru_cache
def get_sessionmaker() -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(), expire_on_commit=False)


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session that commits on success and rolls back on error (workers, CLI)."""
    session = get_sessionmaker()()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
