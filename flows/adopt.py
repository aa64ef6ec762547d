"""What an interrupted or dead `etlctl run` left in Prefect, found and settled by tag.

    cancel_queued(client, batch)      # Ctrl+C / SIGTERM: this batch's runs not yet started
    settle_leftovers(poll_seconds)    # the next `etlctl run`, under the lock, before it submits

Every run of a batch carries the tag `etl-batch:<id>`, the orchestrator's own run included. An
orchestrator run started by `etlctl run` has no deployment and runs inside the process that holds the
fleet-wide lock, so once this process holds the lock, any other such run still Running is dead
(kill -9, a lost host): it is marked Crashed. Its batch's queued table runs are cancelled, so they
never load a table beside the new batch; its running ones are waited for, up to `wait_seconds`, so
a table is not loaded twice at once (the per-table lock in the target, flows.etl.table_lock, holds
that even past the wait).
"""

from __future__ import annotations

import logging
import time
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.states import Cancelled, Crashed

from flows.fleet.flow_runs import all_runs
from flows.names import ORCHESTRATOR_FLOW, TABLE_FLOW, batch_tag
from flows.rescue import crash_lost_runs

QUEUED = [StateType.SCHEDULED, StateType.PENDING, StateType.PAUSED]
UNFINISHED = [*QUEUED, StateType.RUNNING, StateType.CANCELLING]
WAIT_SECONDS = 3600.0  # an old table run still running after this is left to the table lock
BATCH_PREFIX = batch_tag("")
log = logging.getLogger(__name__)


def batch_of(run: FlowRun) -> str | None:
    """The batch id in a run's `etl-batch:<id>` tag."""
    return next((t[len(BATCH_PREFIX) :] for t in run.tags if t.startswith(BATCH_PREFIX)), None)


def _runs(
    client: SyncPrefectClient, states: list[StateType], flows: list[str], tags: list[str] | None = None
) -> list[FlowRun]:
    return client.read_flow_runs(
        flow_filter=FlowFilter(name=FlowFilterName(any_=flows)),
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=states)),
            tags=FlowRunFilterTags(all_=tags) if tags else None,
        ),
        limit=200,
    )


def cancel_queued(client: SyncPrefectClient, batch: str, why: str) -> list[str]:
    """Cancel the batch's runs that have not started (tables and cleanups); their names."""
    queued = all_runs(
        client,
        FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=QUEUED)),
            tags=FlowRunFilterTags(all_=[batch_tag(batch)]),
        ),
    )
    for run in queued:
        client.set_flow_run_state(run.id, Cancelled(message=why), force=True)
    return sorted(run.name for run in queued)


def running_of(client: SyncPrefectClient, batch: str) -> list[FlowRun]:
    """The batch's table runs still running."""
    return _runs(client, [StateType.RUNNING, StateType.CANCELLING], [TABLE_FLOW], [batch_tag(batch)])


def settle_leftovers(poll_seconds: float, pool: str, wait_seconds: float = WAIT_SECONDS) -> list[str]:
    """Crash dead orchestrator runs, cancel their queued runs, wait for their running tables.

    Call only while holding the orchestrator lock. A table run nothing will ever end (its host's
    workers of `pool` all offline, its claiming worker dead before it started: flows.rescue) is
    marked Crashed rather than waited for; this batch loads that table afresh.
    Returns the batches it settled.
    """
    with get_client(sync_client=True) as client:
        dead = [run for run in _runs(client, UNFINISHED, [ORCHESTRATOR_FLOW]) if run.deployment_id is None]
        orphans = {_batch_param(run) for run in dead}
        for run in dead:
            message = "its `etlctl run` process is gone (found by the next `etlctl run`)"
            log.warning("orchestrator run %s of batch %s: %s", run.name, _batch_param(run), message)
            client.set_flow_run_state(run.id, Crashed(message=message), force=True)
        orphans |= _headless_batches(client)
        waiting: dict[UUID, FlowRun] = {}
        for batch in sorted(b for b in orphans if b):
            cancelled = cancel_queued(client, batch, "its batch's orchestrator is gone")
            if cancelled:
                log.warning(
                    "batch %s: cancelled %d queued runs: %s", batch, len(cancelled), ", ".join(cancelled)
                )
            waiting.update((run.id, run) for run in running_of(client, batch))
        _wait_for(client, waiting, poll_seconds, wait_seconds, pool)
    return sorted(b for b in orphans if b)


def _headless_batches(client: SyncPrefectClient) -> set[str | None]:
    """Batches with unfinished table runs whose orchestrator run has ended (Ctrl+C, Crashed).

    Called after the dead orchestrator runs are Crashed: an orchestrator still unfinished then has
    a deployment (started from the UI on an orchestrator worker) and is alive; while one is, no
    batch is judged headless.
    """
    if _runs(client, UNFINISHED, [ORCHESTRATOR_FLOW]):
        return set()  # a live orchestrator's batch id is not known here: judge nothing
    return {batch_of(run) for run in _runs(client, UNFINISHED, [TABLE_FLOW])} - {None}


def _batch_param(run: FlowRun) -> str | None:
    return batch_of(run) or run.parameters.get("batch_id")


def _wait_for(
    client: SyncPrefectClient, runs: dict[UUID, FlowRun], poll_seconds: float, wait_seconds: float, pool: str
) -> None:
    deadline = time.monotonic() + wait_seconds
    pending = set(runs)
    if pending:
        names = ", ".join(sorted(run.name for run in runs.values()))
        log.warning("waiting for %d table runs of an earlier batch to finish first: %s", len(pending), names)
    while pending and time.monotonic() < deadline:
        current = [client.read_flow_run(run_id) for run_id in pending]
        crash_lost_runs(client, current, client.read_workers_for_work_pool(pool), log)
        pending = {run.id for run in current if run.state is not None and not run.state.is_final()}
        if pending:
            time.sleep(poll_seconds)
    if pending:
        log.warning("%d earlier table runs still running; their tables wait on the table lock", len(pending))
