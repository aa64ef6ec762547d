"""A restarted worker gives back the runs its previous life claimed but never started.

    await release_orphaned_claims(client, "db-01", "etl-tables", logger)   # once, at worker start

A worker killed between claiming a run (Pending, labelled with its name) and starting its process
leaves that run Pending for ever, and supervisord or `etlctl workers start` brings the worker back
under the same name within seconds, heartbeating as if nothing happened. The new worker has claimed
nothing yet, so any Pending run of its pool labelled with its name and with no process recorded
(`infrastructure_pid`) is its own orphan: it marks it Crashed with a message that says so, and the
waiting orchestrator resubmits the table at its next poll.
"""

from __future__ import annotations

import logging
from typing import Any

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    WorkPoolFilter,
    WorkPoolFilterName,
)
from prefect.client.schemas.objects import StateType
from prefect.states import Crashed

from flows.fleet.naming import RESUBMITTED, WORKER_LABEL


async def release_orphaned_claims(client: PrefectClient, worker: str, pool: str, logger: Any) -> int:
    """Mark Crashed the never-started claims of an earlier life of `worker`; returns how many."""
    pending = await client.read_flow_runs(
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PENDING]))
        ),
        work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[pool])),
        limit=200,
    )
    orphans = [
        r for r in pending if (r.labels or {}).get(WORKER_LABEL) == worker and not r.infrastructure_pid
    ]
    for run in orphans:
        message = f"worker {worker} restarted after claiming the run, before starting it; {RESUBMITTED}"
        logger.log(logging.WARNING, "%s (%s): marking it Crashed for resubmission", message, run.name)
        await client.set_flow_run_state(run.id, Crashed(message=message), force=True)
    return len(orphans)
