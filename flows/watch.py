"""The orchestrator's wait: poll a batch's runs until each is final, never blind.

    done = wait_for_runs(todo, poll_seconds=2, label="tables", pool="etl-tables", start_timeout=300)

One poll costs one filtered query per 200 runs and one read of the pool's workers. Each poll
  - marks Crashed what nothing will finish (flows.rescue), so the orchestrator resubmits it;
  - notices a pool with no worker online while runs wait: says so within a poll, with the command
    that starts one, again every `REMIND_SECONDS` while it lasts, and after `start_timeout` seconds
    of it cancels the runs not yet started and raises NoWorkerError (exit 69) naming them;
  - hands the counts (and the rows of running tables) to the progress view.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping
from uuid import UUID

from prefect import get_run_logger
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.objects import FlowRun
from prefect.states import Cancelled

from flows.errors import NoWorkerError
from flows.fleet.flow_runs import runs_by_id
from flows.progress import BatchView, Logger, Snapshot, plain_or_live
from flows.rescue import crash_lost_runs

REMIND_SECONDS = 30.0

RowsReader = Callable[[], Mapping[str, tuple[int, float]]]


def start_command(pool: str) -> str:
    """What an operator types to put a worker on `pool` (docs/operations.md has the service forms)."""
    return f"etlctl workers start --pool {pool}"


class IdlePool:
    """Tracks how long a pool has had no worker online while runs wait; warns, then gives up."""

    def __init__(
        self, pool: str, timeout: float, logger: Logger, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.pool, self.timeout, self.logger, self.clock = pool, timeout, logger, clock
        self.since: float | None = None
        self.warned: float | None = None

    def check(self, any_online: bool, waiting: list[str]) -> bool:
        """Record one poll; True when the pool has been empty for the whole timeout."""
        if any_online or not waiting:
            if self.since is not None and any_online:
                self.logger.info("a worker is online on pool %r again", self.pool)
            self.since = self.warned = None
            return False
        now = self.clock()
        if self.since is None:
            self.since = now
        if self.warned is None or now - self.warned >= REMIND_SECONDS:
            self.warned = now
            left = self.timeout - (now - self.since)
            self.logger.warning(
                "no worker is online on pool %r: %d runs wait (%s). Start one: %s "
                "(giving up in %.0f s; --start-timeout)",
                self.pool,
                len(waiting),
                _names(waiting),
                start_command(self.pool),
                max(left, 0.0),
            )
        return now - self.since >= self.timeout


def wait_for_runs(
    runs: Mapping[str, UUID],
    poll_seconds: float,
    label: str,
    pool: str,
    start_timeout: float,
    rows: RowsReader | None = None,
) -> dict[UUID, FlowRun]:
    """Poll until every run of `runs` (name -> id) is final; raise NoWorkerError on an empty pool."""
    logger = get_run_logger()
    names = {run_id: name for name, run_id in runs.items()}
    pending, done = set(names), {}
    idle = IdlePool(pool, start_timeout, logger)
    started = time.monotonic()
    with get_client(sync_client=True) as client, plain_or_live(label, logger) as view:
        while pending:
            workers = client.read_workers_for_work_pool(pool)
            polled = crash_lost_runs(client, runs_by_id(client, pending), workers, logger)
            for run in polled:
                if run.state is not None and run.state.is_final():
                    done[run.id] = run
                    pending.discard(run.id)
            waiting = sorted(names[r.id] for r in polled if r.id in pending and not _started(r))
            if idle.check(any(w.status == "ONLINE" for w in workers), waiting):
                _give_up(client, [r for r in polled if r.id in pending and not _started(r)], pool)
                raise NoWorkerError(
                    f"no worker came online on pool {pool!r} in {start_timeout:.0f} s; "
                    f"{label} not started (cancelled): {', '.join(waiting)}. "
                    f"Start a worker ({start_command(pool)}) and run them again"
                )
            _show(view, names, done, polled, pending, rows, time.monotonic() - started)
            if pending:
                time.sleep(poll_seconds)
    return done


def _show(view: BatchView, names, done, polled, pending, rows: RowsReader | None, elapsed: float) -> None:
    running = {names[r.id]: _seconds_running(r) for r in polled if r.id in pending and _started(r)}
    seconds_done = [_duration(r) for r in done.values() if r.state.is_completed()]
    view.update(
        Snapshot(
            total=len(names),
            done=len(done),
            failed=sum(1 for r in done.values() if not r.state.is_completed()),
            waiting=len(pending) - len(running),
            running=running,
            rows=_safe_rows(rows) if running else {},
            seconds_per_table=seconds_done,
            elapsed=elapsed,
        )
    )


def _safe_rows(rows: RowsReader | None) -> Mapping[str, tuple[int, float]]:
    if rows is None:
        return {}
    try:
        return rows()
    except Exception:
        return {}  # the view goes without rows rather than the batch failing for it


def _started(run: FlowRun) -> bool:
    return run.state is not None and run.state.is_running()


def _seconds_running(run: FlowRun) -> float:
    since = run.start_time or run.state.timestamp
    return max((dt.datetime.now(dt.UTC) - since).total_seconds(), 0.0)


def _duration(run: FlowRun) -> float:
    if run.start_time and run.end_time:
        return (run.end_time - run.start_time).total_seconds()
    return run.total_run_time.total_seconds()


def _give_up(client: SyncPrefectClient, runs: list[FlowRun], pool: str) -> None:
    """Cancel the runs no worker took, so one started later does not load them unwatched."""
    for run in runs:
        client.set_flow_run_state(
            run.id, Cancelled(message=f"no worker online on pool {pool!r}; etlctl run gave up"), force=True
        )


def _names(names: list[str], shown: int = 5) -> str:
    more = len(names) - shown
    return ", ".join(names[:shown]) + (f" and {more} more" if more > 0 else "")
