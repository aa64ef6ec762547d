"""Reading a source table: the query that reads it, and its row count in the same snapshot.

The rows themselves stream out in chunks of plain tuples through `driver.stream_rows`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Select, Table, bindparam, func, select
from sqlalchemy.sql.elements import ColumnElement

from flows.etl.typemap import Verbatim, source_dialect


def source_query(
    table: Table,
    cursor: str | None = None,
    since: Any = None,
    columns: Sequence[ColumnElement] | None = None,
) -> Select:
    """Every row, or for an incremental load every row at or after the watermark, cursor order.

    `columns` is the SELECT list (typemap.read_columns); default: the table's columns as they are.

    `>=` rather than `>`: rows sharing the watermark value may have arrived after the last load,
    and the upsert makes re-reading the ones already loaded harmless. The watermark is bound as the
    driver stores it (a SQLite timestamp as its text), so the driver can run the query as it is.
    """
    query = select(*columns) if columns is not None else select(table)
    if cursor is not None:
        column = table.c[cursor]
        if since is not None:
            query = query.where(column >= _as_stored(column, since))
        query = query.order_by(column)
    return query


def count_rows(conn: Connection, query: Select) -> int:
    """How many rows `query` returns, in the caller's transaction so it matches the stream."""
    return int(conn.execute(select(func.count()).select_from(query.subquery())).scalar_one())


def _as_stored(column: ColumnElement, value: Any) -> ColumnElement:
    dialect = source_dialect(column.table)
    process = column.type.dialect_impl(dialect).bind_processor(dialect)
    stored = process(value) if process else value
    return bindparam("since", stored, type_=Verbatim(column.type))
