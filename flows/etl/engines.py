"""Engines for the step: one place that knows the per-dialect settings that make loads safe.

SQLite needs three things to be a sound source and target under several concurrent workers: a long
busy timeout, real `BEGIN` statements (pysqlite otherwise defers them and splits a transaction's
DDL from its DML), and `BEGIN IMMEDIATE` on the target so two writers queue instead of deadlocking.
PostgreSQL sources read in REPEATABLE READ so a table's row count and its rows share one snapshot,
and every PostgreSQL wait is bounded (flows.etl.pg_timeouts): a silent database fails the table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, NoSuchModuleError
from sqlalchemy.pool import NullPool

from flows.errors import ConfigError, DatabaseUnreachableError, first_line
from flows.etl import pg_timeouts

Role = Literal["source", "target"]
SQLITE_BUSY_SECONDS = 300


def make_engine(url: URL, role: Role, busy_seconds: float = SQLITE_BUSY_SECONDS) -> Engine:
    """An engine for `role`; connections are not pooled because one process moves one table.

    `busy_seconds`: how long a SQLite connection waits for another's write lock. Best-effort side
    writes and reads (progress) pass 0: a load holds the lock for its whole transaction, and waiting
    on it from the same process, or from the orchestrator's poll, stalls both for the full timeout.
    """
    try:
        if url.get_backend_name() == "sqlite":
            return _sqlite_engine(url, role, busy_seconds)
        options: dict[str, object] = {"poolclass": NullPool}
        if role == "source" and url.get_backend_name() == "postgresql":
            options["isolation_level"] = "REPEATABLE READ"
        if not pg_timeouts.applies(url):
            return create_engine(url, **options)
        url, bounded, timeout = pg_timeouts.engine_options(url)
        engine = create_engine(url, **options, **bounded)
        pg_timeouts.bound_answers(engine, timeout)
        return engine
    except (NoSuchModuleError, ImportError) as exc:
        raise ConfigError(
            f"{role} url {url}: no installed driver for {url.drivername!r} ({first_line(exc)})"
        ) from None


def check_connection(engine: Engine, role: Role) -> None:
    """Fail early with one line naming the database (password masked) instead of a traceback."""
    database = engine.url.database
    is_file_source = engine.url.get_backend_name() == "sqlite" and role == "source"
    if is_file_source and database and database != ":memory:" and not Path(database).is_file():
        raise DatabaseUnreachableError(f"source database file {database} does not exist")
    # A database that logs us in and then says nothing fails the check as fast as one that never
    # answers: the probe's every wait is bounded by the connect timeout, not the answer_timeout.
    probe = (
        make_engine(pg_timeouts.probe_url(engine.url), role) if pg_timeouts.applies(engine.url) else engine
    )
    try:
        with probe.connect() as conn:
            conn.execute(text("SELECT 1"))
    except DBAPIError as exc:
        reason = first_line(exc.orig) if exc.orig else type(exc).__name__
        raise DatabaseUnreachableError(f"cannot connect to {role} database {engine.url}: {reason}") from None
    finally:
        if probe is not engine:
            probe.dispose()


def _sqlite_engine(url: URL, role: Role, busy_seconds: float) -> Engine:
    engine = create_engine(url, poolclass=NullPool, connect_args={"timeout": busy_seconds})
    begin = "BEGIN IMMEDIATE" if role == "target" else "BEGIN"

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None
        if role == "target":
            dbapi_connection.execute("PRAGMA journal_mode=WAL")

    @event.listens_for(engine, "begin")
    def _begin(conn) -> None:
        conn.exec_driver_sql(begin)

    return engine
