"""A worker gives back the runs it claimed but holds no process for, so they are resubmitted.

    await release_orphaned_claims(client, "db-01", "etl-tables", submitting, logger)  # every 30 s

A worker killed between claiming a run (Pending, labelled with its name) and starting its process
leaves that run Pending for ever, and supervisord or `etlctl workers start` brings the worker back
under the same name within seconds, heartbeating as if nothing happened, so the orchestrator's
heartbeat rule never fires. A run whose process died while the API was away (a server restart)
stays Pending too: nobody could report it. The worker's own record settles both: a Pending run of
its pool labelled with its name that it is not submitting right now and that is not one of its
live processes is an orphan. It marks it Crashed with a message that says so, and the waiting
orchestrator resubmits the table at its next poll.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any
from uuid import UUID

import psutil
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    WorkPoolFilter,
    WorkPoolFilterName,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.states import Crashed

from flows.fleet.naming import RESUBMITTED, WORKER_LABEL


async def release_orphaned_claims(
    client: PrefectClient, worker: str, pool: str, submitting: Collection[UUID], logger: Any
) -> int:
    """Mark Crashed the Pending runs `worker` claimed but holds no process for; returns how many."""
    pending = await client.read_flow_runs(
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PENDING]))
        ),
        work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[pool])),
        limit=200,
    )
    mine = {p.pid for p in psutil.Process().children(recursive=True)}
    lost = orphans(pending, worker, set(submitting), mine)
    for run in lost:
        message = (
            f"worker {worker} has no process for the run it claimed "
            f"(restarted, or the start failed unreported); {RESUBMITTED}"
        )
        logger.log(logging.WARNING, "%s (%s): marking it Crashed", message, run.name)
        await client.set_flow_run_state(run.id, Crashed(message=message), force=True)
    return len(lost)


def orphans(pending: list[FlowRun], worker: str, submitting: set[UUID], alive: set[int]) -> list[FlowRun]:
    """Of the pool's Pending runs, those labelled `worker` that it is neither submitting now nor
    running as one of its own processes (`infrastructure_pid`, a pid or `host:pid`)."""
    return [
        run
        for run in pending
        if (run.labels or {}).get(WORKER_LABEL) == worker
        and run.id not in submitting
        and _pid(run.infrastructure_pid) not in alive
    ]


def _pid(infrastructure_pid: str | None) -> int | None:
    tail = (infrastructure_pid or "").rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else None
