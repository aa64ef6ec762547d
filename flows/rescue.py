"""Which unfinished runs nothing will ever finish, so the orchestrator marks them Crashed and resubmits.

    runs = crash_lost_runs(client, runs, workers, logger)   # once per poll of the orchestrator

Three cases, each judged from what Prefect already holds:
  - a run claimed by a worker that has since stopped heartbeating (killed between claim and start
    and not restarted, frozen, or gone with its host) and no process started for it
    (`infrastructure_pid`): it stays Pending for ever. A worker heartbeats every 10 s here
    (flows.fleet.worker_exec); one silent for `STALE_BEATS` beats is dead, so the run is resubmitted
    about 20-30 s after its worker died, where Prefect's own OFFLINE status would take 30 s more.
    A worker restarted under its old name gives such runs back itself (flows.fleet.orphans);
  - a run Running on a host whose workers are all offline: nothing is left there to report its end;
  - any run Pending longer than `PENDING_LIMIT` (its worker lives but the start failed unreported,
    e.g. across a server restart).
A run is traced to its worker by the `prefect.worker.name` label the worker sets when it claims it.
Prefect lets a Crashed run move to Running, so a process that starts after all (its worker was
frozen, not dead) would load the table a second time: the table flow asks `given_up` first and
ends Cancelled without loading. That can happen between two polls of the orchestrator, which then
never sees the Crashed state: `to_resubmit` counts such a Cancelled run as lost too.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.objects import FlowRun, State, Worker
from prefect.states import Crashed

from flows.fleet.naming import RESUBMITTED, WORKER_LABEL, host_of_worker, run_host

PENDING_LIMIT = 300  # seconds; a claimed run normally leaves Pending within seconds
STALE_BEATS = 2.5  # heartbeats a live worker never misses; Prefect waits 3 before OFFLINE
DEFAULT_HEARTBEAT = 30.0  # Prefect's, for a worker that does not say its own


def crash_lost_runs(
    client: SyncPrefectClient,
    runs: list[FlowRun],
    workers: Sequence[Worker],
    logger: logging.Logger | logging.LoggerAdapter,
) -> list[FlowRun]:
    """`runs`, with those nothing will finish marked Crashed (and re-read) so they can be resubmitted."""
    now = dt.datetime.now(dt.UTC)
    unfinished = [r for r in runs if r.state and not r.state.is_final()]
    online = {w.name: w.status == "ONLINE" for w in workers}
    lost = lost_hosts({h for r in unfinished if (h := run_host(r.labels))}, online)
    dead = dead_workers(workers, now)
    for run in unfinished:
        why = lost_reason(run, now, lost, dead)
        if why:
            message = f"{why}; {RESUBMITTED}"
            logger.warning("%s (%s)", message, run.name)
            client.set_flow_run_state(run.id, Crashed(message=message), force=True)
            run.state = client.read_flow_run(run.id).state
    return runs


def given_up(client: SyncPrefectClient, run_id: UUID) -> str | None:
    """Why this run was given up for resubmission, if it was since it was last scheduled (a person
    may schedule it again on purpose)."""
    why = None
    for state in sorted(client.read_flow_run_states(run_id), key=lambda s: s.timestamp):
        if state.is_scheduled():
            why = None
        elif state.is_crashed() and RESUBMITTED in (state.message or ""):
            why = state.message
    return why


def to_resubmit(state: State) -> bool:
    """Whether a table run ended without loading and without failing on its own: it crashed, or it
    started after it was given up (its Cancelled message carries the give-up message)."""
    return state.is_crashed() or (state.is_cancelled() and RESUBMITTED in (state.message or ""))


def lost_reason(run: FlowRun, now: dt.datetime, lost: set[str], dead: set[str]) -> str | None:
    """Why `run` will never finish by itself, or None while something may still finish it."""
    worker = (run.labels or {}).get(WORKER_LABEL)
    host = run_host(run.labels)
    if run.state.is_pending() and worker in dead and not run.infrastructure_pid:
        return f"worker {worker} stopped heartbeating after claiming the run, before starting it"
    if host in lost:
        return f"host {host} lost: none of its workers is online"
    if run.state.is_pending() and (now - run.state.timestamp).total_seconds() > PENDING_LIMIT:
        return f"stuck Pending for over {PENDING_LIMIT} s"
    return None


def dead_workers(workers: Sequence[Worker], now: dt.datetime) -> set[str]:
    """Names of the pool's workers that missed more heartbeats than a live one ever does."""
    return {w.name for w in workers if is_dead(w, now)}


def is_dead(worker: Worker, now: dt.datetime) -> bool:
    if worker.status == "OFFLINE" or worker.last_heartbeat_time is None:
        return True
    interval = float(getattr(worker, "heartbeat_interval_seconds", None) or DEFAULT_HEARTBEAT)
    return (now - worker.last_heartbeat_time).total_seconds() > STALE_BEATS * interval


def lost_hosts(hosts: set[str], workers: dict[str, bool]) -> set[str]:
    """Of `hosts`, those the pool knows (some worker is named after them) with no worker online.

    `workers` maps each worker name of the pool to whether it is online. A host the pool has never
    seen is not judged: its runs may come from a worker outside etlctl's naming.
    """
    known = {host_of_worker(name) for name in workers}
    online = {host_of_worker(name) for name, is_online in workers.items() if is_online}
    return {host for host in hosts if host in known and host not in online}
