"""SQLite into SQLite on the same host: SQLite copies the rows itself, no row passes through Python.

    if attachable(src, tgt, source, source_schema):
        with attached(tgt, src):
            with tgt.begin():
                expected = count_attached(tgt, source)
                for copied in copy_attached(tgt, source, target, chunk_size): ...

The source file is ATTACHed to the target's connection and every chunk is one `INSERT ... SELECT`
by rowid range, all inside the target's single load transaction: the count, the rows and the state
row share one snapshot of the source and commit (or roll back) together.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import Connection, Table
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import OperationalError

from flows.etl.typemap import value_adapters

SCHEMA = "etlctl_source"


def attachable(src: Connection, tgt: Connection, source: Table, source_schema: str | None) -> bool:
    """Both ends SQLite files, the source's own schema, a rowid table, no value that needs adapting."""
    database = src.engine.url.database
    return (
        src.dialect.name == "sqlite"
        and tgt.dialect.name == "sqlite"
        and source_schema is None
        and bool(database)
        and database != ":memory:"
        and Path(database).is_file()
        and _has_rowid(src, source)
        and not any(value_adapters(source, tgt.dialect))
    )


@contextmanager
def attached(tgt: Connection, src: Connection) -> Iterator[None]:
    """The source file attached read-only to the target's connection for the duration of the block.

    Read-only, because the target's `BEGIN IMMEDIATE` would otherwise take the write lock of every
    attached file: the source's own writers would wait for the load. ATTACH and DETACH run on the
    driver connection, outside any transaction, as SQLite requires.
    """
    dbapi = tgt.connection.driver_connection
    uri = "file:" + quote(str(Path(src.engine.url.database).resolve())) + "?mode=ro"
    dbapi.execute(f"ATTACH DATABASE ? AS {SCHEMA}", (uri,))
    try:
        yield
    finally:
        dbapi.execute(f"DETACH DATABASE {SCHEMA}")


def count_attached(tgt: Connection, source: Table) -> int:
    return int(tgt.exec_driver_sql(f"SELECT count(*) FROM {_source_name(tgt.dialect, source)}").scalar_one())


def copy_attached(tgt: Connection, source: Table, target: Table, chunk_size: int) -> Iterator[int]:
    """Copy every row of the attached source into `target`, `chunk_size` rows at a time in rowid
    order; yields the number of rows each chunk copied."""
    preparer = tgt.dialect.identifier_preparer
    columns = ", ".join(preparer.quote(c.name) for c in source.columns)
    origin = _source_name(tgt.dialect, source)
    copy = (
        f"INSERT INTO {preparer.format_table(target)} ({columns}) "
        f"SELECT {columns} FROM {origin} WHERE rowid > ? AND rowid <= ? ORDER BY rowid"
    )
    chunk_end = f"SELECT max(rowid) FROM (SELECT rowid FROM {origin} WHERE rowid > ? ORDER BY rowid LIMIT ?)"
    last = None
    while (end := tgt.exec_driver_sql(chunk_end, (_after(last), chunk_size)).scalar()) is not None:
        yield tgt.exec_driver_sql(copy, (_after(last), end)).rowcount
        last = end


def _after(rowid: int | None) -> int:
    return -(2**63) if rowid is None else rowid


def _source_name(dialect: Dialect, source: Table) -> str:
    return f"{SCHEMA}.{dialect.identifier_preparer.quote(source.name)}"


def _has_rowid(src: Connection, source: Table) -> bool:
    """A rowid to chunk by: not a WITHOUT ROWID table, and no column that hides the rowid's name."""
    if {c.name.lower() for c in source.columns} & {"rowid", "_rowid_", "oid"}:
        return False
    name = src.dialect.identifier_preparer.quote(source.name)
    try:
        src.exec_driver_sql(f"SELECT rowid FROM {name} LIMIT 0")
    except OperationalError:
        return False
    return True
