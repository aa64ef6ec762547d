"""Rows at the driver level: tuples out of the DBAPI cursor and into it, with no per-row SQLAlchemy work.

    for chunk in stream_rows(src, query, 10_000):
        write_rows(tgt, table, names, chunk)

SQLAlchemy still builds every statement (quoting, types, parameters); these functions run them on
the connection's own DBAPI cursor, inside the connection's transaction. That skips building a Row
and a parameter dict per row, which cost 20-30x the time of the copy itself (issue 10). Values are
what the driver gives and takes: typemap's `Verbatim` already turned off SQLAlchemy's per-value
processing, and typemap's adapters are the only conversions.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import pq
from psycopg.generators import fetch_many
from sqlalchemy import Connection, Select, Table, insert
from sqlalchemy.exc import DataError

from flows.etl.copytext import copy_text

READ_CURSOR = "etlctl_read"
PIPE_BLOCK = 256 * 1024  # bytes of COPY text per write into the target


def stream_rows(conn: Connection, query: Select, chunk_size: int) -> Iterator[list[tuple]]:
    """Chunks of at most `chunk_size` tuples; memory holds one chunk, whatever the table size.

    psycopg reads through a server-side cursor (one FETCH per chunk); pysqlite steps through the
    rows lazily by itself. Other drivers go through SQLAlchemy's own streaming.
    """
    sql, params = _compiled(conn, query)
    dbapi = conn.connection.driver_connection
    if _is_psycopg(conn):
        yield from _ahead(_fetched(dbapi.cursor(name=READ_CURSOR), conn, sql, params, chunk_size))
    elif conn.dialect.name == "sqlite":
        yield from _fetched(dbapi.cursor(), conn, sql, params, chunk_size)
    else:
        result = conn.execution_options(yield_per=chunk_size).execute(query)
        for partition in result.partitions(chunk_size):
            yield [tuple(row) for row in partition]


def _fetched(
    cursor: Any, conn: Connection, sql: str, params: Any, chunk_size: int
) -> Generator[list[tuple], None, None]:
    try:
        cursor.execute(sql, params)
        while chunk := cursor.fetchmany(chunk_size):
            yield chunk
    except conn.dialect.loaded_dbapi.DataError as exc:  # a value the driver cannot turn into Python
        raise DataError(sql, params, exc) from exc
    finally:
        cursor.close()


def _ahead(chunks: Generator[list[tuple], None, None]) -> Iterator[list[tuple]]:
    """`chunks`, with the next one fetched in a thread while the caller writes this one.

    A PostgreSQL server-side cursor answers one FETCH at a time: without this, the server works
    while Python waits, then Python works while the server waits (2 s of a 7 s load of 1M rows
    into SQLite). psycopg releases the GIL while it waits; one chunk more is held in memory.
    """
    pool = ThreadPoolExecutor(1, thread_name_prefix="etlctl-fetch")
    try:
        coming = pool.submit(next, chunks, None)
        while (chunk := coming.result()) is not None:
            coming = pool.submit(next, chunks, None)
            yield chunk
    finally:
        pool.shutdown(wait=True)  # the fetch under way ends before its cursor closes
        chunks.close()


def write_rows(conn: Connection, table: Table, names: Sequence[str], rows: Sequence[tuple]) -> None:
    """Append rows: PostgreSQL's COPY through psycopg, one executemany of tuples elsewhere."""
    if rows:
        with rows_writer(conn, table, names) as write:
            write(rows, None)


RowsWriter = Callable[[Sequence[tuple], Sequence[Sequence] | None], None]


@contextmanager
def rows_writer(conn: Connection, table: Table, names: Sequence[str]) -> Iterator[RowsWriter]:
    """A function that appends chunks of rows, for as long as the context lasts: `write(rows,
    columns)`, where `columns` is None or the same rows transposed (saves copytext doing it).

    On PostgreSQL it is one COPY for all the chunks, so the server parses one chunk while Python
    reads the next (a COPY per chunk waits for the server at each end). A chunk goes as one block
    of text when copytext can write every column, else psycopg formats it row by row.
    """
    preparer = conn.dialect.identifier_preparer
    columns = ", ".join(preparer.quote(name) for name in names)
    into = f"{preparer.format_table(table)} ({columns})"
    dbapi = conn.connection.driver_connection
    if _is_psycopg(conn):
        with dbapi.cursor() as cursor, cursor.copy(f"COPY {into} FROM STDIN") as copy:

            def copy_rows(rows: Sequence[tuple], columns: Sequence[Sequence] | None = None) -> None:
                if (block := copy_text(rows, columns)) is not None:
                    copy.write(block)
                    return
                for row in rows:
                    copy.write_row(row)

            yield copy_rows
    elif conn.dialect.name == "sqlite":
        marks = ", ".join("?" * len(names))
        yield lambda rows, _=None: dbapi.cursor().executemany(f"INSERT INTO {into} VALUES ({marks})", rows)
    else:
        yield lambda rows, _=None: conn.execute(
            insert(table), [dict(zip(names, row, strict=True)) for row in rows]
        )


class _GcPause:
    """Counted, so that loads in parallel threads turn the collector back on once, at the end."""

    lock = threading.Lock()
    holders = 0
    was_enabled = False


@contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while rows move.

    A chunk is thousands of new tuples, and each few hundred allocations start a collection that
    walks the live objects: 15-20% of the CPU of reading and formatting SQLite rows. Rows hold no
    reference cycles, so reference counting frees them all the same. For full loads only: an
    incremental load's per-chunk statements leave some cyclic garbage (peak RSS grew 4 MiB from
    200k to 2M rows with the pause, bench.memory).
    """
    with _GcPause.lock:
        if _GcPause.holders == 0:
            _GcPause.was_enabled = gc.isenabled()
            gc.disable()
        _GcPause.holders += 1
    try:
        yield
    finally:
        with _GcPause.lock:
            _GcPause.holders -= 1
            if _GcPause.holders == 0 and _GcPause.was_enabled:
                gc.enable()


def _is_psycopg(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg"


def _compiled(conn: Connection, query: Select) -> tuple[str, Any]:
    """The SQL text and the parameters in the driver's own style.

    Bound values must need no SQLAlchemy processing (reader.source_query binds them so).
    psycopg gets a mapping even when it is empty, so that `%%` in a quoted name becomes `%`.
    """
    compiled = query.compile(dialect=conn.dialect)
    values = compiled.construct_params()
    if compiled.positional:
        return str(compiled), tuple(values[name] for name in compiled.positiontup or ())
    return str(compiled), dict(values)


def can_pipe(src: Connection, tgt: Connection) -> bool:
    """Both ends PostgreSQL through psycopg: COPY out of one straight into the other."""
    return _is_psycopg(src) and _is_psycopg(tgt)


def pipe_rows(
    src: Connection,
    query: Select,
    tgt: Connection,
    table: Table,
    names: Sequence[str],
    progress: Callable[[int], None],
    every: int,
) -> int:
    """`COPY (query) TO STDOUT` streamed into `COPY table FROM STDIN`, block by block, in both
    connections' transactions: no Python row is ever built. Returns the rows copied; calls
    `progress(rows so far)` every `every` rows.

    Text format: the target's types are the source's (or their text, typemap.read_columns), and
    text is what both ends agree on for every type, json and domains included.

    The server sends each row as one CopyData message. psycopg's `Copy.read` and `Copy.write`
    each cost a generator and a wait per call (17 s of a 1M-row profile); here the rows already
    received are taken straight from libpq's buffer and written in blocks of PIPE_BLOCK bytes,
    and psycopg is asked only when the buffer is empty (so the wait keeps answer_timeout).
    """
    sql, params = _compiled(src, query)
    preparer = tgt.dialect.identifier_preparer
    columns = ", ".join(preparer.quote(name) for name in names)
    into = f"COPY {preparer.format_table(table)} ({columns}) FROM STDIN"
    reader = src.connection.driver_connection
    pgconn = reader.pgconn
    block = bytearray()
    rows = reported = 0
    with (
        reader.cursor() as reading,
        tgt.connection.driver_connection.cursor() as writing,
        reading.copy(f"COPY ({sql}) TO STDOUT", params) as out,
        writing.copy(into) as copy_in,
    ):
        while True:
            size, data = pgconn.get_copy_data(1)  # 1: never block, rows already received
            if size == 0:  # nothing buffered: psycopg waits (answer_timeout) and reads the next row
                data = out.read()
                if not data:  # the end, and psycopg has checked the COPY's final result
                    break
            elif size < 0:  # the end came with the rows already received
                _finish_copy_out(reader)
                break
            block += data
            rows += 1
            if len(block) >= PIPE_BLOCK:
                copy_in.write(block)
                block.clear()
                if rows - reported >= every:
                    progress(reported := rows)
        copy_in.write(block)
    if rows != reported:
        progress(rows)
    return rows


def _finish_copy_out(conn: Any) -> None:
    """Read the final result of a COPY TO whose end `get_copy_data` returned, as psycopg does."""
    results = conn.wait(fetch_many(conn.pgconn))
    for result in results:
        if result.status != pq.ExecStatus.COMMAND_OK:
            raise psycopg.errors.error_from_result(result, encoding=conn.info.encoding)
