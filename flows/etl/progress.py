"""Rows read so far by each running table, kept in the target for the orchestrator's live view.

    record = ProgressRecorder(config, "orders", batch_id)   # in the table flow: on_chunk=record
    rows = read_progress(engine, schema, batch_id)           # in the orchestrator, once per poll

Why the target and not Prefect: the table already writes to the target after every chunk, and the
orchestrator already reads the target for its report, so one small row per running table, written at
most every `every` seconds, costs nothing the fleet does not pay anyway. The Prefect API (a SQLite
server that answers 503 under bursts) gets no extra writes per chunk. Progress is best effort: a
write that fails is skipped, never the load. A SQLite file has one writer at a time and a load holds
it for its whole transaction (a SQLite-to-SQLite full load, its whole copy), so on SQLite the rows
live in a file of their own beside the target (`progress_place`), and neither side ever waits for a
lock there: a write or read that finds one taken is skipped.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import URL, Column, DateTime, Engine, Integer, MetaData, String, Table, delete, insert, select

from flows.config import Config
from flows.etl.engines import make_engine

PROGRESS_TABLE = "_etlctl_progress"
WRITE_EVERY = 2.0  # seconds between two progress writes of one table


def progress_place(config: Config) -> tuple[URL, str | None]:
    """Where progress rows live (url, schema): beside a SQLite target file, else in the target."""
    url, database = config.target_url, config.target_url.database
    if url.get_backend_name() == "sqlite" and database and database != ":memory:":
        return url.set(database=f"{database}-progress"), None
    return url, config.target_schema


def progress_table(schema: str | None) -> Table:
    """One row per table: the batch that loads it now, rows read so far, when it started and last wrote."""
    return Table(
        PROGRESS_TABLE,
        MetaData(schema=schema),
        Column("table_name", String(255), primary_key=True),
        Column("batch_id", String(64), index=True),
        Column("rows_read", Integer, nullable=False),
        Column("started_at", DateTime, nullable=False),
        Column("updated_at", DateTime, nullable=False),
    )


@dataclass(frozen=True)
class TableProgress:
    table: str
    rows: int
    seconds: float  # from the table's start to its last write, on the table's own clock

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


class ProgressRecorder:
    """A throttled `on_chunk` hook: writes the table's row count at most every `every` seconds."""

    def __init__(self, config: Config, table: str, batch_id: str | None, every: float = WRITE_EVERY) -> None:
        self.table, self.batch_id, self.every = table, batch_id or "", every
        self._engine: Engine | None = None
        self._url, self._schema = progress_place(config)
        self._started = _now()
        self._last: float | None = None

    def __call__(self, rows_read: int) -> None:
        if self._last is not None and time.monotonic() - self._last < self.every:
            return
        self._last = time.monotonic()
        try:
            self._write(rows_read)
        except Exception:
            return  # progress is advisory; the load must not fail for it

    def _write(self, rows_read: int) -> None:
        if self._engine is None:
            self._engine = make_engine(self._url, "target", busy_seconds=0)
        table = progress_table(self._schema)
        with self._engine.begin() as conn:
            table.create(conn, checkfirst=True)
            conn.execute(delete(table).where(table.c.table_name == self.table))
            conn.execute(
                insert(table).values(
                    table_name=self.table,
                    batch_id=self.batch_id,
                    rows_read=rows_read,
                    started_at=self._started,
                    updated_at=_now(),
                )
            )

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()


def read_progress(engine: Engine, schema: str | None, batch_id: str) -> dict[str, TableProgress]:
    """The batch's tables that have written progress; empty when none has yet."""
    table = progress_table(schema)
    with engine.connect() as conn:
        if not engine.dialect.has_table(conn, table.name, schema=schema):
            return {}
        rows = conn.execute(select(table).where(table.c.batch_id == batch_id))
        return {
            r.table_name: TableProgress(
                r.table_name, r.rows_read, (r.updated_at - r.started_at).total_seconds()
            )
            for r in rows
        }


@contextmanager
def rows_reader(config: Config, batch_id: str) -> Iterator[Callable[[], dict[str, tuple[int, float]]]]:
    """A function giving each running table of the batch its (rows read, rows/s), on one engine."""
    url, schema = progress_place(config)
    engine = make_engine(url, "target", busy_seconds=0)
    try:
        yield lambda: {
            name: (p.rows, p.rows_per_second) for name, p in read_progress(engine, schema, batch_id).items()
        }
    finally:
        engine.dispose()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)
