"""After a batch: tidy what failed runs left in the target, refresh statistics, record the summary.

Used by the two cleanup flows; plain SQLAlchemy so it can be run and tested without Prefect.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence

from sqlalchemy import (
    Connection,
    Engine,
    MetaData,
    Table,
    delete,
    func,
    insert,
    inspect,
    select,
    text,
    update,
)

from flows.etl.state import batches_table, state_tables


def settle_interrupted(conn: Connection, schema: str | None) -> list[str]:
    """Mark tables whose load died between chunks (state still 'running') as 'interrupted'.

    Their committed chunks and watermark stay: the next run resumes from there.
    """
    state, _ = state_tables(schema)
    if not inspect(conn).has_table(state.name, schema=schema):
        return []
    stuck = list(conn.execute(select(state.c.table_name).where(state.c.outcome == "running")).scalars())
    if stuck:
        conn.execute(
            update(state)
            .where(state.c.outcome == "running")
            .values(outcome="interrupted", error="the load stopped between two chunks; resumes next run")
        )
    return stuck


def prune_history(conn: Connection, schema: str | None, keep_days: int) -> int:
    """Drop run rows older than `keep_days`, so the history table does not grow without end."""
    _, runs = state_tables(schema)
    if not inspect(conn).has_table(runs.name, schema=schema):
        return 0
    cutoff = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(days=keep_days)
    return conn.execute(delete(runs).where(runs.c.finished_at < cutoff)).rowcount


def checkpoint(engine: Engine) -> None:
    """SQLite only: fold the write-ahead log back into the database file so it stops growing."""
    if engine.dialect.name == "sqlite":
        raw = engine.raw_connection()  # outside any transaction, or the checkpoint cannot truncate
        try:
            raw.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            raw.close()


def analyze(conn: Connection, tables: Sequence[str], schema: str | None) -> list[str]:
    """Refresh planner statistics for the loaded tables that exist in the target."""
    present = set(inspect(conn).get_table_names(schema=schema))
    preparer = conn.dialect.identifier_preparer
    done = []
    for name in tables:
        if name in present:
            quoted = preparer.format_table(Table(name, MetaData(schema=schema)))
            conn.execute(text(f"ANALYZE {quoted}"))
            done.append(name)
    return done


def record_batch(
    conn: Connection, schema: str | None, batch_id: str, tables: Sequence[str], failed: Sequence[str]
) -> dict[str, object]:
    """Write (or rewrite, for a retried orchestrator) the batch's summary row."""
    batches = batches_table(schema)
    _, runs = state_tables(schema)
    batches.metadata.create_all(conn)
    rows = 0
    if inspect(conn).has_table(runs.name, schema=schema):
        rows = conn.execute(
            select(func.coalesce(func.sum(runs.c.rows_written), 0)).where(
                runs.c.batch_id == batch_id, runs.c.outcome == "success"
            )
        ).scalar_one()
    summary = {
        "batch_id": batch_id,
        "tables": len(tables),
        "succeeded": len(tables) - len(failed),
        "failed": json.dumps(sorted(failed)),
        "rows_written": int(rows),
        "finished_at": dt.datetime.now(dt.UTC).replace(tzinfo=None),
    }
    conn.execute(delete(batches).where(batches.c.batch_id == batch_id))
    conn.execute(insert(batches).values(**summary))
    return summary
