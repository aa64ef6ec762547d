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

A run left Running by a worker killed with kill -9 goes on in its own process (the fork server
never kills it) and reports its own end. If that process dies too before the worker is back, no one
is left to report it: the restarted worker finds a Running run labelled with its name whose process
is gone from this host and marks it Crashed the same way (unless it ended meanwhile).

A read of the API is a snapshot: it can show a run this worker claims right now as Pending without
the pid its submission records a moment later. So the worker's processes are listed before the
read, and a run counts as in hand if its submission was under way at any moment since
(`Submissions`), not only when the read returns.
"""

from __future__ import annotations

import logging
import time
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

KEEP_SECONDS = 600.0  # far longer than any read of the API takes


class Submissions:
    """The runs a worker is submitting (claim, fork, pid recorded), and when each submission ended."""

    def __init__(self) -> None:
        self._active: set[UUID] = set()
        self._ended: dict[UUID, float] = {}

    def begin(self, run_id: UUID) -> None:
        self._active.add(run_id)

    def end(self, run_id: UUID) -> None:
        self._active.discard(run_id)
        self._ended[run_id] = time.monotonic()

    def since(self, mark: float) -> set[UUID]:
        """Runs in submission at any moment since `mark` (a `time.monotonic()` reading)."""
        now = time.monotonic()
        self._ended = {run: at for run, at in self._ended.items() if now - at < KEEP_SECONDS}
        return self._active | {run for run, at in self._ended.items() if at >= mark}


async def release_orphaned_claims(
    client: PrefectClient, worker: str, pool: str, submissions: Submissions, logger: Any
) -> int:
    """Mark Crashed the Pending runs `worker` claimed but holds no process for, and its Running runs
    whose process is gone; returns how many."""
    mark = time.monotonic()
    mine = {p.pid for p in psutil.Process().children(recursive=True)}  # a later one is in hand
    unfinished = await client.read_flow_runs(
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PENDING, StateType.RUNNING]))
        ),
        work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[pool])),
        limit=200,
    )
    pending = [run for run in unfinished if run.state_type == StateType.PENDING]
    running = [run for run in unfinished if run.state_type == StateType.RUNNING]
    in_hand = submissions.since(mark)
    claimed = (
        f"worker {worker} has no process for the run it claimed (restarted, or the start failed unreported)"
    )
    gone = f"the process of the run worker {worker} started is gone (killed while the worker was down)"
    # A Running run is only moved on if it still is: not over an end its process reported meanwhile.
    lost = [(run, claimed, True) for run in orphans(pending, worker, in_hand, mine)]
    lost += [(run, gone, False) for run in headless(running, worker, in_hand)]
    for run, why, force in lost:
        message = f"{why}; {RESUBMITTED}"
        logger.log(logging.WARNING, "%s (%s): marking it Crashed", message, run.name)
        await client.set_flow_run_state(run.id, Crashed(message=message), force=force)
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


def headless(running: list[FlowRun], worker: str, submitting: set[UUID]) -> list[FlowRun]:
    """Of the pool's Running runs, those labelled `worker` whose process no longer exists here."""
    return [
        run
        for run in running
        if (run.labels or {}).get(WORKER_LABEL) == worker
        and run.id not in submitting
        and (pid := _pid(run.infrastructure_pid)) is not None
        and not _alive(pid)
    ]


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _pid(infrastructure_pid: str | None) -> int | None:
    tail = (infrastructure_pid or "").rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else None
