"""Per-table state in the target database, written in the same transaction as the rows it describes.

`_etlctl_state` holds one row per table (the watermark and the last outcome); `_etlctl_runs` holds one
row per table per batch, for `etlctl status` and the cleanup flows. Keeping both in the target means
a rolled-back load also rolls back its watermark: the state can never run ahead of the data.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    func,
    insert,
    select,
)

STATE_TABLE = "_etlctl_state"
RUNS_TABLE = "_etlctl_runs"
BATCHES_TABLE = "_etlctl_batches"


def batches_table(schema: str | None) -> Table:
    """One row per orchestrator run, written by the second cleanup flow when the batch is over."""
    return Table(
        BATCHES_TABLE,
        MetaData(schema=schema),
        Column("batch_id", String(64), primary_key=True),
        Column("tables", Integer, nullable=False),
        Column("succeeded", Integer, nullable=False),
        Column("failed", Text),
        Column("rows_written", Integer, nullable=False),
        Column("finished_at", DateTime, nullable=False),
    )


def state_tables(schema: str | None) -> tuple[Table, Table]:
    """The per-table bookkeeping tables, bound to the target schema."""
    meta = MetaData(schema=schema)
    state = Table(
        STATE_TABLE,
        meta,
        Column("table_name", String(255), primary_key=True),
        Column("mode", String(16), nullable=False),
        Column("watermark", Text),
        Column("rows_read", Integer, nullable=False),
        Column("rows_written", Integer, nullable=False),
        Column("seconds", Float, nullable=False),
        Column("batch_id", String(64)),
        Column("outcome", String(16), nullable=False),
        Column("error", Text),
        Column("updated_at", DateTime, nullable=False),
    )
    runs = Table(
        RUNS_TABLE,
        meta,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("batch_id", String(64), index=True),
        Column("table_name", String(255), nullable=False),
        Column("mode", String(16), nullable=False),
        Column("rows_read", Integer, nullable=False),
        Column("rows_written", Integer, nullable=False),
        Column("seconds", Float, nullable=False),
        Column("watermark_before", Text),
        Column("watermark_after", Text),
        Column("outcome", String(16), nullable=False),
        Column("error", Text),
        Column("worker", String(255)),
        Column("finished_at", DateTime, nullable=False),
    )
    return state, runs


@dataclass
class TableResult:
    """What one table run did; the flows return it and the CLI prints it."""

    table: str
    mode: str
    batch_id: str | None
    rows_read: int = 0
    rows_written: int = 0
    seconds: float = 0.0
    watermark_before: Any = None
    watermark_after: Any = None
    outcome: str = "success"
    error: str | None = None
    worker: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe, so it can travel as a Prefect result or a `--json` line."""
        data = dict(self.__dict__)
        data["watermark_before"] = encode_watermark(self.watermark_before)
        data["watermark_after"] = encode_watermark(self.watermark_after)
        return data


def encode_watermark(value: Any) -> str | None:
    """Text that `decode_watermark` turns back into the same value for the cursor's type."""
    if value is None:
        return None
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return str(value) if not isinstance(value, float) else repr(value)


def decode_watermark(text: str | None, python_type: type) -> Any:
    """The stored watermark as a value comparable with the cursor column."""
    if text is None:
        return None
    if python_type is dt.datetime:
        return dt.datetime.fromisoformat(text)
    if python_type is dt.date:
        return dt.date.fromisoformat(text)
    if python_type is dt.time:
        return dt.time.fromisoformat(text)
    if python_type in (int, float, Decimal):
        return python_type(text)
    return text


def read_watermark(conn: Connection, state: Table, table: str) -> str | None:
    return conn.execute(select(state.c.watermark).where(state.c.table_name == table)).scalar_one_or_none()


def record(conn: Connection, state: Table, runs: Table, result: TableResult) -> None:
    """Write the table's state and its run row; call inside the transaction that moved the data."""
    save_state(conn, state, result)
    conn.execute(
        insert(runs).values(
            **_outcome(result),
            watermark_before=encode_watermark(result.watermark_before),
            watermark_after=encode_watermark(result.watermark_after),
            worker=result.worker,
            finished_at=_utcnow(),
        )
    )


def save_state(conn: Connection, state: Table, result: TableResult) -> None:
    """Replace the table's state row; an incremental load calls it with every committed chunk."""
    conn.execute(delete(state).where(state.c.table_name == result.table))
    conn.execute(
        insert(state).values(
            **_outcome(result), watermark=encode_watermark(result.watermark_after), updated_at=_utcnow()
        )
    )


def _outcome(result: TableResult) -> dict[str, Any]:
    """The columns the state row and the run row share."""
    return {
        "table_name": result.table,
        "mode": result.mode,
        "rows_read": result.rows_read,
        "rows_written": result.rows_written,
        "seconds": result.seconds,
        "batch_id": result.batch_id,
        "outcome": result.outcome,
        "error": result.error,
    }


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def batch_results(conn: Connection, runs: Table, batch_id: str) -> list[TableResult]:
    """The last attempt of every table in a batch, in table order."""
    rows = conn.execute(select(runs).where(runs.c.batch_id == batch_id).order_by(runs.c.id)).mappings()
    latest = {row["table_name"]: row for row in rows}
    return [
        TableResult(
            table=name,
            mode=row["mode"],
            batch_id=batch_id,
            rows_read=row["rows_read"],
            rows_written=row["rows_written"],
            seconds=row["seconds"],
            watermark_before=row["watermark_before"],
            watermark_after=row["watermark_after"],
            outcome=row["outcome"],
            error=row["error"],
            worker=row["worker"],
        )
        for name, row in sorted(latest.items())
    ]


def recent_batch_ids(conn: Connection, runs: Table, limit: int) -> list[str]:
    """The newest batches first, by when their last table finished."""
    query = (
        select(runs.c.batch_id)
        .group_by(runs.c.batch_id)
        .order_by(func.max(runs.c.finished_at).desc())
        .limit(limit)
    )
    return list(conn.execute(query).scalars())
