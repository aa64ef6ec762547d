"""Reading a source table: rows stream out in chunks of plain tuples, never the whole table.

`yield_per` asks for a server-side cursor where the driver has one (psycopg, pg8000) and bounds the
client-side buffer where it does not (pysqlite already steps through rows lazily).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import Connection, Select, Table, func, select
from sqlalchemy.sql.elements import ColumnElement


def source_query(
    table: Table,
    cursor: str | None = None,
    since: Any = None,
    columns: Sequence[ColumnElement] | None = None,
) -> Select:
    """Every row, or for an incremental load every row at or after the watermark, cursor order.

    `columns` is the SELECT list (typemap.read_columns); default: the table's columns as they are.

    `>=` rather than `>`: rows sharing the watermark value may have arrived after the last load,
    and the upsert makes re-reading the ones already loaded harmless.
    """
    query = select(*columns) if columns is not None else select(table)
    if cursor is not None:
        column = table.c[cursor]
        if since is not None:
            query = query.where(column >= since)
        query = query.order_by(column)
    return query


def count_rows(conn: Connection, query: Select) -> int:
    """How many rows `query` returns, in the caller's transaction so it matches the stream."""
    return int(conn.execute(select(func.count()).select_from(query.subquery())).scalar_one())


def stream_chunks(conn: Connection, query: Select, chunk_size: int) -> Iterator[Sequence[tuple]]:
    """Chunks of at most `chunk_size` rows; memory holds one chunk, whatever the table size."""
    result = conn.execution_options(yield_per=chunk_size).execute(query)
    for partition in result.partitions(chunk_size):
        yield [tuple(row) for row in partition]
