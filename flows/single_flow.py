"""The single-flow variant: every table as a task of one flow run, on one machine.

    make run-flow     # etlctl run --single-flow; or, with PREFECT_API_URL set: python -m flows.single_flow

Simpler than the per-table fan-out when one host is enough: no deployments and no workers, just a
Prefect server. Tasks carry the `database` tag, so the tag concurrency limit `etlctl setup` creates
(3 by default, $PREFECT_CONCURRENCY_LIMIT to change it) caps how many tables load at once.
"""

from __future__ import annotations

import sys
from typing import Any

from prefect import flow, task
from prefect.futures import wait
from prefect.states import Completed, Failed, State

from flows.config import load_config
from flows.etl.batch import new_batch_id
from flows.etl.plan import checked_plans
from flows.etl.step import run_table
from flows.names import DATABASE_TAG


@task(name="load-table", tags=[DATABASE_TAG], retries=1, retry_delay_seconds=10, persist_result=False)
def load_table(table: str, batch_id: str) -> dict[str, Any]:
    return run_table(load_config(), table, batch_id, worker="etl-all-tables").to_dict()


@flow(name="etl-all-tables", persist_result=False)
def etl_all_tables(tables: list[str] | None = None) -> State:
    """Load every selected table as a task; ends Failed naming the tables that failed."""
    config = load_config()
    names = [plan.name for plan in checked_plans(config, tables)]
    batch = new_batch_id()
    futures = {name: load_table.with_options(task_run_name=name).submit(name, batch) for name in names}
    wait(list(futures.values()))
    failed = sorted(name for name, future in futures.items() if not future.state.is_completed())
    if failed:
        return Failed(message=f"{len(failed)} of {len(names)} tables failed: {', '.join(failed)}")
    return Completed(message=f"{len(names)} tables loaded in batch {batch}")


if __name__ == "__main__":
    final = etl_all_tables(tables=sys.argv[1:] or None, return_state=True)
    print(final.message)
    sys.exit(0 if final.is_completed() else 1)
