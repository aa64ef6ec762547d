"""Writing into the target: create and evolve the table, stage and swap a full load, upsert deltas.

A full load is written to a TEMPORARY staging table (private to this connection, gone if the process
dies) and then swapped in with one short transaction: DELETE the target's rows, INSERT ... SELECT from
staging. Readers see the old rows until that transaction commits and the new rows after; the target
keeps its own indexes, grants and dependent views.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from sqlalchemy import (
    Column,
    Connection,
    MetaData,
    Table,
    delete,
    func,
    insert,
    inspect,
    or_,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.schema import CreateColumn

from flows.errors import UnsupportedError
from flows.etl.typemap import comparable, target_column

STAGING_PREFIX = "_etlctl_stage_"
_UPSERT_INSERTS = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


def target_table(
    source: Table,
    source_dialect: Dialect,
    target_dialect: Dialect,
    key: Sequence[str],
    schema: str | None,
) -> Table:
    """The target's shape for `source`: same names, mapped types, `key` as its primary key."""
    columns = [target_column(c, source_dialect, target_dialect, c.name in key) for c in source.columns]
    return Table(source.name, MetaData(schema=schema), *columns)


def ensure_target(conn: Connection, table: Table) -> None:
    """Create the target table, or add the columns the source gained since the last run."""
    inspector = inspect(conn)
    if not inspector.has_table(table.name, schema=table.schema):
        table.create(conn)
        return
    existing = {c["name"] for c in inspector.get_columns(table.name, schema=table.schema)}
    preparer = conn.dialect.identifier_preparer
    for column in table.columns:
        if column.name in existing:
            continue
        added = Column(column.name, column.type, nullable=True)
        spec = CreateColumn(added).compile(dialect=conn.dialect)
        conn.execute(text(f"ALTER TABLE {preparer.format_table(table)} ADD COLUMN {spec}"))


def create_staging(conn: Connection, table: Table) -> Table:
    """A connection-private copy of the target's columns that readers can never see."""
    digest = hashlib.sha1(table.name.encode()).hexdigest()[:16]
    staging = Table(
        STAGING_PREFIX + digest,
        MetaData(),
        *(Column(c.name, c.type) for c in table.columns),
        prefixes=["TEMPORARY"],
    )
    staging.create(conn)
    return staging


def insert_rows(conn: Connection, table: Table, names: Sequence[str], rows: Sequence[tuple]) -> None:
    """Append rows: PostgreSQL's COPY through psycopg where available, executemany elsewhere."""
    if conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg":
        _copy_rows(conn, table, names, rows)
        return
    conn.execute(insert(table), [dict(zip(names, row, strict=True)) for row in rows])


def _copy_rows(conn: Connection, table: Table, names: Sequence[str], rows: Sequence[tuple]) -> None:
    """COPY ... FROM STDIN in the connection's own transaction; psycopg adapts each Python value."""
    preparer = conn.dialect.identifier_preparer
    columns = ", ".join(preparer.quote(name) for name in names)
    statement = f"COPY {preparer.format_table(table)} ({columns}) FROM STDIN"
    with conn.connection.driver_connection.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def swap_in(conn: Connection, staging: Table, target: Table) -> int:
    """Replace the target's rows with staging's; returns the target's row count after the swap."""
    names = [c.name for c in staging.columns]
    conn.execute(delete(target))
    conn.execute(insert(target).from_select(names, select(*staging.columns)))
    return int(conn.execute(select(func.count()).select_from(target)).scalar_one())


def upsert_rows(
    conn: Connection, table: Table, key: Sequence[str], names: Sequence[str], rows: Sequence[tuple]
) -> int:
    """Insert new rows, update changed ones, leave identical ones alone; returns rows written.

    The WHERE on the update makes a re-read of rows already loaded (the watermark tie) a no-op,
    so a rerun with no source change writes nothing.
    """
    make_insert = _UPSERT_INSERTS.get(conn.dialect.name)
    if make_insert is None:
        raise UnsupportedError(f"incremental loads into {conn.dialect.name} are not supported yet")
    stmt = make_insert(table)
    others = [n for n in names if n not in key]
    if others:
        stmt = stmt.on_conflict_do_update(
            index_elements=[table.c[k] for k in key],
            set_={n: stmt.excluded[n] for n in others},
            where=or_(
                *(comparable(table.c[n]).is_distinct_from(comparable(stmt.excluded[n])) for n in others)
            ),
        )
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=[table.c[k] for k in key])
    # RETURNING counts exactly the rows written, whichever way the driver batches executemany.
    stmt = stmt.returning(table.c[key[0]])
    result = conn.execute(stmt, [dict(zip(names, row, strict=True)) for row in rows])
    return len(result.all())
