"""Reading the run history the table step keeps in the target: `etlctl status` and run reports."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Connection, Table

from flows.config import Config
from flows.etl import state as st
from flows.etl.engines import check_connection, make_engine

T = TypeVar("T")


def _read(config: Config, query: Callable[[Connection, Table], list[T]]) -> list[T]:
    """Run `query` against the run history; an empty list where nothing has run yet."""
    engine = make_engine(config.target_url, "target")
    check_connection(engine, "target")
    _, runs = st.state_tables(config.target_schema)
    try:
        with engine.connect() as conn:
            if not engine.dialect.has_table(conn, runs.name, schema=runs.schema):
                return []
            return query(conn, runs)
    finally:
        engine.dispose()


def batch_results(config: Config, batch_id: str) -> list[st.TableResult]:
    """The last attempt of every table in `batch_id`."""
    return _read(config, lambda conn, runs: st.batch_results(conn, runs, batch_id))


def recent_batches(config: Config, limit: int) -> list[tuple[str, list[st.TableResult]]]:
    """The newest `limit` batches, each with the last attempt of each of its tables."""
    return _read(
        config,
        lambda conn, runs: [
            (b, st.batch_results(conn, runs, b)) for b in st.recent_batch_ids(conn, runs, limit)
        ],
    )
