"""Writing into the target: create and evolve the table, replace a full load, upsert deltas.

A full load replaces the target's rows in one transaction (DELETE, then the new rows): readers see
the old rows until it commits and the new rows after, and the target keeps its own indexes, grants
and dependent views. Where the new rows go first depends on the target (docs/performance.md):

- PostgreSQL: straight into the target, inside that one transaction (`replaces_in_place`): MVCC
  keeps readers on the old rows, so every row is written once.
- SQLite: a TEMPORARY staging table (private to this connection, gone if the process dies), then
  one short swap transaction (`swap_in`). SQLite has one writer per file: loading straight into the
  target would hold the file's write lock for the whole read of the source, and every other table
  loading into the same file would wait that long.
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
    true,
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


def replaces_in_place(conn: Connection) -> bool:
    """Whether a full load writes straight into the target inside its one transaction."""
    return conn.dialect.name == "postgresql"


def clear(conn: Connection, table: Table) -> None:
    """Delete the target's rows in the load's transaction (not TRUNCATE: readers keep reading)."""
    conn.execute(delete(table))


def count(conn: Connection, table: Table) -> int:
    return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def swap_in(conn: Connection, staging: Table, target: Table) -> int:
    """Replace the target's rows with staging's; returns the target's row count after the swap."""
    names = [c.name for c in staging.columns]
    clear(conn, target)
    conn.execute(insert(target).from_select(names, select(*staging.columns)))
    return count(conn, target)


def upsert_rows(
    conn: Connection, table: Table, key: Sequence[str], delta: Table, names: Sequence[str]
) -> int:
    """Insert `delta`'s rows that are new, update changed ones, leave identical ones alone, in one
    statement; empties `delta` and returns the rows written.

    The WHERE on the update makes a re-read of rows already loaded (the watermark tie) a no-op,
    so a rerun with no source change writes nothing.
    """
    # RETURNING counts exactly the rows written; rowcount of INSERT ... SELECT is -1 on PostgreSQL.
    stmt = upsert(conn.dialect, table, key, names, delta).returning(table.c[key[0]])
    written = len(conn.execute(stmt).all())
    conn.execute(delete(delta))
    return written


def upsert(dialect: Dialect, table: Table, key: Sequence[str], names: Sequence[str], delta: Table):
    """`INSERT INTO table SELECT * FROM delta ON CONFLICT (key) DO UPDATE ... WHERE changed`.

    The one upsert of both dialects; the benchmark runs the same statement as its native baseline.
    """
    make_insert = _UPSERT_INSERTS.get(dialect.name)
    if make_insert is None:
        raise UnsupportedError(f"incremental loads into {dialect.name} are not supported yet")
    # WHERE true: SQLite would otherwise read ON CONFLICT as part of a join in the SELECT
    rows = select(*(delta.c[n] for n in names)).where(true())
    stmt = make_insert(table).from_select(names, rows)
    others = [n for n in names if n not in key]
    if not others:
        return stmt.on_conflict_do_nothing(index_elements=[table.c[k] for k in key])
    return stmt.on_conflict_do_update(
        index_elements=[table.c[k] for k in key],
        set_={n: stmt.excluded[n] for n in others},
        where=or_(*(comparable(table.c[n]).is_distinct_from(comparable(stmt.excluded[n])) for n in others)),
    )
