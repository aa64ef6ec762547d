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

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from sqlalchemy import Connection, Select, Table, insert
from sqlalchemy.exc import DataError

READ_CURSOR = "etlctl_read"


def stream_rows(conn: Connection, query: Select, chunk_size: int) -> Iterator[list[tuple]]:
    """Chunks of at most `chunk_size` tuples; memory holds one chunk, whatever the table size.

    psycopg reads through a server-side cursor (one FETCH per chunk); pysqlite steps through the
    rows lazily by itself. Other drivers go through SQLAlchemy's own streaming.
    """
    sql, params = _compiled(conn, query)
    dbapi = conn.connection.driver_connection
    if _is_psycopg(conn):
        cursor = dbapi.cursor(name=READ_CURSOR)
    elif conn.dialect.name == "sqlite":
        cursor = dbapi.cursor()
    else:
        result = conn.execution_options(yield_per=chunk_size).execute(query)
        for partition in result.partitions(chunk_size):
            yield [tuple(row) for row in partition]
        return
    try:
        cursor.execute(sql, params)
        while chunk := cursor.fetchmany(chunk_size):
            yield chunk
    except conn.dialect.loaded_dbapi.DataError as exc:  # a value the driver cannot turn into Python
        raise DataError(sql, params, exc) from exc
    finally:
        cursor.close()


def write_rows(conn: Connection, table: Table, names: Sequence[str], rows: Sequence[tuple]) -> None:
    """Append rows: PostgreSQL's COPY through psycopg, one executemany of tuples elsewhere."""
    if not rows:
        return
    preparer = conn.dialect.identifier_preparer
    columns = ", ".join(preparer.quote(name) for name in names)
    into = f"{preparer.format_table(table)} ({columns})"
    dbapi = conn.connection.driver_connection
    if _is_psycopg(conn):
        with dbapi.cursor() as cursor, cursor.copy(f"COPY {into} FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    if conn.dialect.name == "sqlite":
        marks = ", ".join("?" * len(names))
        dbapi.cursor().executemany(f"INSERT INTO {into} VALUES ({marks})", rows)
        return
    conn.execute(insert(table), [dict(zip(names, row, strict=True)) for row in rows])


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
    text is what both ends agree on for every type, json and domains included. In it every row
    ends with a newline byte (a newline inside a value is written as backslash-n).
    """
    sql, params = _compiled(src, query)
    preparer = tgt.dialect.identifier_preparer
    columns = ", ".join(preparer.quote(name) for name in names)
    into = f"COPY {preparer.format_table(table)} ({columns}) FROM STDIN"
    rows = reported = 0
    with (
        src.connection.driver_connection.cursor() as reading,
        tgt.connection.driver_connection.cursor() as writing,
        reading.copy(f"COPY ({sql}) TO STDOUT", params) as out,
        writing.copy(into) as copy_in,
    ):
        for block in out:
            copy_in.write(block)
            rows += bytes(block).count(b"\n")
            if rows - reported >= every:
                progress(reported := rows)
    if rows != reported:
        progress(rows)
    return rows
