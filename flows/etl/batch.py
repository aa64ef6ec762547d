"""Several tables in this process, one after the other: `etlctl load`, and the step's own tests."""

from __future__ import annotations

import datetime as dt

from flows.config import Config
from flows.errors import first_line
from flows.etl.plan import checked_plans
from flows.etl.state import TableResult
from flows.etl.step import run_table

BATCH_ID_FORMAT = "%Y%m%dT%H%M%S.%fZ"


def new_batch_id(started: dt.datetime | None = None) -> str:
    """Sortable and readable in `etlctl status`: the UTC time the batch started (default: now)."""
    return (started or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).strftime(BATCH_ID_FORMAT)


def run_tables(config: Config, names: list[str], batch_id: str | None = None) -> list[TableResult]:
    """Run each table; a failed table is recorded and reported, and the others still run.

    Unknown table names fail before anything moves, so a typo changes nothing in the target.
    """
    plans = checked_plans(config, names)
    batch = batch_id or new_batch_id()
    results = []
    for name in (plan.name for plan in plans):
        try:
            results.append(run_table(config, name, batch))
        except Exception as exc:
            results.append(_failed(config, name, batch, exc))
    return results


def _failed(config: Config, name: str, batch: str, exc: Exception) -> TableResult:
    mode = config.options_for(name).mode
    return TableResult(name, mode, batch, outcome="failed", error=first_line(exc))
