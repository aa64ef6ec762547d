"""The orchestrator flow, `main-etl-job`: one table flow run per table, then the two cleanups.

    etlctl run            # in this process, as cron or a systemd timer runs it
    prefect deployment run main-etl-job/main-etl-deployment   # on a worker of the orchestrator pool

Every child is created with an idempotency key made of the batch id and the table, so a retried or
restarted orchestrator with the same batch id re-attaches to the runs it already made instead of
loading a table twice. Prefect does not raise when a child fails, so every child's final state is
read here, the cleanups run regardless, and the flow ends Failed naming the failed tables.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Collection
from typing import Any
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.runtime import flow_run as current_run
from prefect.states import Completed, Crashed, Failed, State

from flows.config import load_config
from flows.etl.batch import new_batch_id
from flows.etl.plan import checked_plans
from flows.fleet.flow_runs import runs_by_id
from flows.fleet.naming import host_of_worker, run_host
from flows.names import CLEANUP_FLOWS, ORCHESTRATOR_FLOW, TABLE_FLOW, batch_tag, deployment
from flows.submit import Submission, submit_all

TABLE_DEPLOYMENT = deployment(TABLE_FLOW)
CLEANUP_DEPLOYMENTS = tuple(deployment(name) for name in CLEANUP_FLOWS)
CRASH_RESUBMITS = 1
PENDING_LIMIT = 300  # seconds; a claimed run normally leaves Pending within seconds


def wait_for_runs(
    ids: Collection[UUID], poll_seconds: float, label: str = "runs", pool: str | None = None
) -> dict[UUID, FlowRun]:
    """Poll until every run is in a final state: one filtered query per 200 runs per poll.

    With `pool`, a run left Running on a host whose workers have all gone offline (the host died:
    nothing is left there to report the run's end) is marked Crashed, so it can be resubmitted.
    """
    logger = get_run_logger()
    pending, done = set(ids), {}
    last = None
    with get_client(sync_client=True) as client:
        while pending:
            runs = runs_by_id(client, pending)
            if pool:
                runs = _crash_runs_of_lost_hosts(client, runs, pool, logger)
            running = 0
            for run in runs:
                if run.state is not None and run.state.is_final():
                    done[run.id] = run
                    pending.discard(run.id)
                elif run.state is not None and run.state.is_running():
                    running += 1
            failed = sum(1 for r in done.values() if not r.state.is_completed())
            progress = (len(done), running, failed, len(pending) - running)
            if progress != last:
                logger.info(
                    "%s: %d done (%d failed), %d running, %d waiting of %d",
                    label,
                    progress[0],
                    failed,
                    running,
                    progress[3],
                    len(ids),
                )
                last = progress
            if pending:
                time.sleep(poll_seconds)
    return done


def _crash_runs_of_lost_hosts(client, runs: list[FlowRun], pool: str, logger) -> list[FlowRun]:
    """Mark Crashed the unfinished runs that nothing will ever finish, so they can be resubmitted:
    those of hosts known to the pool whose workers are all offline, and those stuck Pending (a
    worker killed between claiming a run and starting its process leaves it Pending for ever).

    A host is judged only by workers named after it (`<host>-NN`), so a run whose host is unknown
    to the pool is left alone rather than guessed about.
    """
    unfinished = [r for r in runs if r.state and not r.state.is_final()]
    now = dt.datetime.now(dt.UTC)
    stuck = {
        r.id
        for r in unfinished
        if r.state.is_pending() and (now - r.state.timestamp).total_seconds() > PENDING_LIMIT
    }
    hosts = [(run_host(r.labels), r) for r in unfinished]
    lost: set[str] = set()
    if any(host for host, _ in hosts):
        workers = client.read_workers_for_work_pool(pool)
        lost = lost_hosts(
            {host for host, _ in hosts if host}, {w.name: w.status == "ONLINE" for w in workers}
        )
    for host, run in hosts:
        if host in lost or run.id in stuck:
            why = f"host {host} lost: none of its workers is online" if host in lost else "stuck Pending"
            message = f"{why}; the table will be resubmitted"
            logger.warning("%s (%s)", message, run.name)
            client.set_flow_run_state(run.id, Crashed(message=message), force=True)
            run.state = client.read_flow_run(run.id).state
    return runs


def lost_hosts(hosts: set[str], workers: dict[str, bool]) -> set[str]:
    """Of `hosts`, those the pool knows (some worker is named after them) with no worker online.

    `workers` maps each worker name of the pool to whether it is online. A host the pool has never
    seen is not judged: its runs may come from a worker outside etlctl's naming.
    """
    known = {host_of_worker(name) for name in workers}
    online = {host_of_worker(name) for name, is_online in workers.items() if is_online}
    return {host for host in hosts if host in known and host not in online}


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
    """One table run per name, created concurrently; the key carries the attempt after the first."""
    suffix = f":{attempt}" if attempt > 1 else ""
    return submit_all(
        [
            Submission(
                name,
                TABLE_DEPLOYMENT,
                f"{batch}:{name}{suffix}",
                {"table": name, "batch_id": batch},
                tuple(tags),
            )
            for name in names
        ]
    )


def default_batch_id() -> str:
    """Stable across retries of one orchestrator run: its scheduled start time."""
    started = current_run.scheduled_start_time
    return new_batch_id(started)


@flow(name=ORCHESTRATOR_FLOW, persist_result=False)
def main_etl(tables: list[str] | None = None, batch_id: str | None = None) -> State:
    """Fan out one `process-table-etl` run per table, wait for all, then run both cleanups."""
    logger = get_run_logger()
    config = load_config()
    batch = batch_id or default_batch_id()
    names = [plan.name for plan in checked_plans(config, tables)]
    tags = [batch_tag(batch)]
    logger.info("batch %s: %d tables -> %s", batch, len(names), TABLE_DEPLOYMENT)
    by_table: dict[str, FlowRun] = {}
    todo = _submit_tables(names, batch, tags, attempt=1)
    for attempt in range(CRASH_RESUBMITS + 1):
        finished = wait_for_runs(
            todo.values(), config.prefect.poll_seconds, "tables", config.prefect.table_pool
        )
        by_table.update({name: finished[run_id] for name, run_id in todo.items()})
        crashed = [name for name, run_id in todo.items() if finished[run_id].state.is_crashed()]
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
    cleaned = wait_for_runs(cleanups, config.prefect.poll_seconds, "cleanups", config.prefect.cleanup_pool)
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
