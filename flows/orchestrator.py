"""The orchestrator flow, `main-etl-job`: one table flow run per table, then the two cleanups.

    etlctl run            # in this process, as cron or a systemd timer runs it
    prefect deployment run main-etl-job/main-etl-deployment   # on a worker of the orchestrator pool

Every child is created with an idempotency key made of the batch id and the table, so a retried or
restarted orchestrator with the same batch id re-attaches to the runs it already made instead of
loading a table twice. Prefect does not raise when a child fails, so every child's final state is
read here, the cleanups run regardless, and the flow ends Failed naming the failed tables.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.runtime import flow_run as current_run
from prefect.states import Completed, Failed, State

from flows.config import load_config
from flows.etl.batch import new_batch_id
from flows.etl.plan import checked_plans
from flows.etl.progress import rows_reader
from flows.names import CLEANUP_FLOWS, ORCHESTRATOR_FLOW, TABLE_FLOW, batch_tag, deployment
from flows.rescue import to_resubmit
from flows.submit import Submission, submit_all
from flows.watch import wait_for_runs

TABLE_DEPLOYMENT = deployment(TABLE_FLOW)
CLEANUP_DEPLOYMENTS = tuple(deployment(name) for name in CLEANUP_FLOWS)
CRASH_RESUBMITS = 1


def _submit(deployment: str, key: str, parameters: dict[str, Any], tags: list[str], name: str) -> UUID:
    run = run_deployment(
        deployment,
        parameters=parameters,
        timeout=0,
        idempotency_key=key,
        tags=tags,
        flow_run_name=name,
        as_subflow=True,
    )
    return run.id


def _submit_tables(names: list[str], batch: str, tags: list[str], attempt: int) -> dict[str, UUID]:
    """One table run per name, created in bulk; the key carries the attempt after the first."""
    suffix = f":{attempt}" if attempt > 1 else ""
    return submit_all(
        TABLE_DEPLOYMENT,
        [
            Submission(name, f"{batch}:{name}{suffix}", {"table": name, "batch_id": batch}, tuple(tags))
            for name in names
        ],
    )


def default_batch_id() -> str:
    """Stable across retries of one orchestrator run: its scheduled start time."""
    started = current_run.scheduled_start_time
    return new_batch_id(started)


@flow(name=ORCHESTRATOR_FLOW, persist_result=False)
def main_etl(
    tables: list[str] | None = None, batch_id: str | None = None, start_timeout: float | None = None
) -> State:
    """Fan out one `process-table-etl` run per table, wait for all, then run both cleanups.

    `start_timeout` (default: [prefect] start_timeout) bounds the wait on a pool with no worker online.
    """
    logger = get_run_logger()
    config = load_config()
    prefect = config.prefect
    patience = start_timeout or prefect.start_timeout
    batch = batch_id or default_batch_id()
    names = [plan.name for plan in checked_plans(config, tables)]
    tags = [batch_tag(batch)]
    logger.info("batch %s: %d tables -> %s", batch, len(names), TABLE_DEPLOYMENT)
    by_table: dict[str, FlowRun] = {}
    todo = _submit_tables(names, batch, tags, attempt=1)
    for attempt in range(CRASH_RESUBMITS + 1):
        with rows_reader(config, batch) as rows:
            finished = wait_for_runs(todo, prefect.poll_seconds, "tables", prefect.table_pool, patience, rows)
        by_table.update({name: finished[run_id] for name, run_id in todo.items()})
        crashed = [name for name, run_id in todo.items() if to_resubmit(finished[run_id].state)]
        if not crashed or attempt == CRASH_RESUBMITS:
            break
        logger.warning("batch %s: resubmitting tables whose run crashed: %s", batch, ", ".join(crashed))
        todo = _submit_tables(crashed, batch, tags, attempt=attempt + 2)
    failed = sorted(name for name, run in by_table.items() if not run.state.is_completed())
    cleanup_params = [{"batch_id": batch}, {"batch_id": batch, "tables": names, "failed": failed}]
    cleanups = [
        _submit(dep, f"{batch}:{dep}", params, tags, dep.split("/")[0])
        for dep, params in zip(CLEANUP_DEPLOYMENTS, cleanup_params, strict=True)
    ]
    by_name = dict(zip(CLEANUP_DEPLOYMENTS, cleanups, strict=True))
    cleaned = wait_for_runs(by_name, prefect.poll_seconds, "cleanups", prefect.cleanup_pool, patience)
    broken = [
        dep
        for dep, run_id in zip(CLEANUP_DEPLOYMENTS, cleanups, strict=True)
        if not cleaned[run_id].state.is_completed()
    ]
    summary = {
        "batch_id": batch,
        "tables": {name: run.state.name for name, run in sorted(by_table.items())},
        "failed": failed,
        "errors": {name: by_table[name].state.message for name in failed},  # Prefect's reason, for reports
        "cleanups_failed": broken,
    }
    if failed or broken:
        problems = [f"{len(failed)} of {len(names)} tables failed: {', '.join(failed)}"] if failed else []
        problems += [f"cleanup failed: {', '.join(broken)}"] if broken else []
        return Failed(message="; ".join(problems), data=summary)
    return Completed(message=f"{len(names)} tables loaded", data=summary)
