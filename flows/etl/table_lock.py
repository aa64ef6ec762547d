"""One load of a table at a time, whoever starts it: a lock held in (or next to) the target.

    with table_lock(target_engine, "orders", schema="staging"):
        ...  # read the source, stage, swap in

Two loads of one table that overlap (an old batch's run and a new one's, or `etlctl load` during a
batch) would otherwise both delete and insert: in PostgreSQL, READ COMMITTED lets the later swap keep
the rows the earlier one inserted, and the table ends with twice its rows. The later load waits here
until the earlier one ends, then reads the source afresh.

PostgreSQL: a session advisory lock keyed on the schema and table, on a connection of its own, so it
is independent of the load's transactions and released by the server if the process dies. It is
tried once a second rather than awaited in one statement, so `answer_timeout` never cuts the wait.
SQLite: an exclusive `flock` on a file per table beside the database file, released by the kernel
if the process dies. A target that is neither (or an in-memory SQLite) is not locked.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, text

from flows.errors import TableBusyError

WAIT_SECONDS = 6 * 3600.0  # a night's batch; after that the load fails, naming the table
POLL_SECONDS = 1.0
log = logging.getLogger(__name__)


def lock_key(schema: str | None, table: str) -> int:
    """A signed 64-bit key for `pg_advisory_lock`, stable across processes and hosts."""
    digest = hashlib.sha256(f"etlctl-table:{schema or ''}.{table}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextmanager
def table_lock(
    engine: Engine, table: str, schema: str | None = None, wait_seconds: float = WAIT_SECONDS
) -> Iterator[None]:
    """Hold the table's lock for the block; wait for another load of it to end, up to `wait_seconds`."""
    backend = engine.url.get_backend_name()
    if backend == "postgresql":
        with _pg_lock(engine, lock_key(schema, table), table, wait_seconds):
            yield
    elif backend == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        with _file_lock(_lock_path(engine.url.database, schema, table), table, wait_seconds):
            yield
    else:
        yield


@contextmanager
def _pg_lock(engine: Engine, key: int, table: str, wait_seconds: float) -> Iterator[None]:
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")

        def take() -> bool:
            return bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar())

        _acquire(take, table, wait_seconds)
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})


@contextmanager
def _file_lock(path: Path, table: str, wait_seconds: float) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:

        def take() -> bool:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                return False

        _acquire(take, table, wait_seconds)
        yield
    finally:
        os.close(fd)  # closing the only descriptor releases the flock


def _lock_path(database: str, schema: str | None, table: str) -> Path:
    """`<target.db>.locks/<hash>.lock`: a table name may hold any character, a file name may not."""
    folder = Path(f"{database}.locks")
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder / f"{lock_key(schema, table) & 0xFFFFFFFFFFFFFFFF:016x}.lock"


def _acquire(take: Callable[[], bool], table: str, wait_seconds: float) -> None:
    deadline = time.monotonic() + wait_seconds
    if take():
        return
    log.warning("table %r is being loaded by another process: waiting for it to finish", table)
    while time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
        if take():
            log.warning("table %r: the other load has ended; loading it now", table)
            return
    raise TableBusyError(
        f"table {table!r} is still being loaded by another process after {wait_seconds:g} s; "
        "nothing was changed (see `etlctl status` and the Prefect UI for the other run)"
    )
