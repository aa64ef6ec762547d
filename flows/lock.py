"""One orchestrator at a time across the whole fleet, held in Prefect rather than in a local file.

Two hosts' crontabs (or a cron line and a person at a terminal) cannot overlap: `etlctl run` takes
the single slot of the global concurrency limit `etlctl-orchestrator` without waiting. The slot is a
lease that the holder renews every few seconds; if the holder dies, Prefect reclaims it when the
lease expires (`LEASE_SECONDS`).

So that a killed `etlctl run` does not lock the next one out until then, the holder writes who it
is (host, pid, process start time, lease id, batch) to the Prefect variable `HOLDER_VARIABLE`. A run
refused the slot reads it and releases that lease at once when the holder is provably dead: it ran
on this host and its process is gone, or its orchestrator flow run has already ended. A holder on
another host that may be alive keeps the lease: only its expiry frees the slot.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from uuid import UUID

import httpx
import psutil
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.concurrency._leases import maintain_concurrency_lease
from prefect.exceptions import ObjectNotFound
from prefect.variables import Variable

from flows.errors import AlreadyRunningError, PrefectUnavailableError
from flows.fleet.naming import this_host
from flows.names import LOCK_NAME, ORCHESTRATOR_FLOW, batch_tag

LEASE_SECONDS = 60.0
HOLDER_VARIABLE = "etlctl_orchestrator_holder"
log = logging.getLogger(__name__)


@dataclass
class Holder:
    """Who holds the lock's lease, as the next `etlctl run` needs it to tell dead from slow."""

    host: str
    pid: int
    started: float  # the process's create time: a pid reused by a later process is not the holder
    lease_id: str
    batch: str | None = None


def create_lock() -> str:
    """Called by `etlctl setup`: the limit that makes the lock, created once."""
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(LOCK_NAME)
            return f"global concurrency limit {LOCK_NAME}: exists"
        except ObjectNotFound:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=LOCK_NAME, limit=1))
            return f"global concurrency limit {LOCK_NAME}: created (1 orchestrator run at a time)"


def process_gone(pid: int, started: float) -> bool:
    """True when no live process `pid` started at `started` exists on this host."""
    try:
        proc = psutil.Process(pid)
        return abs(proc.create_time() - started) > 0.5 or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def dead_reason(client: SyncPrefectClient, holder: Holder, host: str) -> str | None:
    """Why `holder` can hold the lock no more, or None while it may be alive (e.g. on another host)."""
    if holder.host == host and process_gone(holder.pid, holder.started):
        return f"its process {holder.pid} on {host} is gone"
    if holder.batch:
        runs = client.read_flow_runs(limit=5, **_orchestrator_of(holder.batch))
        ended = [r for r in runs if r.state and r.state.is_final()]
        if runs and len(ended) == len(runs):
            return f"its orchestrator run {ended[0].name} is {ended[0].state.name}"
    return None


def _orchestrator_of(batch: str) -> dict:
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterTags

    return {
        "flow_filter": FlowFilter(name=FlowFilterName(any_=[ORCHESTRATOR_FLOW])),
        "flow_run_filter": FlowRunFilter(tags=FlowRunFilterTags(all_=[batch_tag(batch)])),
    }


def read_holder() -> Holder | None:
    value = Variable.get(HOLDER_VARIABLE)
    try:
        return Holder(**value) if isinstance(value, dict) else None
    except TypeError:
        return None  # written by another version: judged by the lease alone


_held: Holder | None = None


def note_batch(batch: str) -> None:
    """Called by the lock's holder once it knows its batch: lets the next run see that batch end."""
    if _held is not None:
        _held.batch = batch
        Variable.set(HOLDER_VARIABLE, asdict(_held), overwrite=True)


def _take(client: SyncPrefectClient) -> UUID | None:
    """The lease on the lock's slot, or None if another holder has it."""
    try:
        response = client.increment_concurrency_slots_with_lease(
            names=[LOCK_NAME], slots=1, mode="concurrency", lease_duration=LEASE_SECONDS
        )
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code == httpx.codes.LOCKED:
            return None
        raise PrefectUnavailableError(f"could not take the lock {LOCK_NAME!r}: {exc}") from None
    return UUID(response.json()["lease_id"])


def _take_over(client: SyncPrefectClient) -> UUID | None:
    """Release the recorded holder's lease if it is provably dead, then take the slot."""
    holder = read_holder()
    why = dead_reason(client, holder, this_host()) if holder else None
    if why is None:
        return None
    client.release_concurrency_slots_with_lease(UUID(holder.lease_id))
    lease = _take(client)  # None again if another run was faster (the record was stale)
    if lease is not None:
        log.warning("the orchestrator lock's holder is dead (%s): released its lease", why)
    return lease


@contextmanager
def orchestrator_lock() -> Iterator[None]:
    """Hold the fleet-wide slot for the block; AlreadyRunningError (exit 75) if it is taken."""
    global _held
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(LOCK_NAME)
        except ObjectNotFound:
            raise PrefectUnavailableError(
                f"the fleet-wide lock {LOCK_NAME!r} does not exist yet: run `etlctl setup`"
            ) from None
        lease = _take(client) or _take_over(client)
        if lease is None:
            raise AlreadyRunningError(
                "skipped: another orchestrator run is active in the fleet (lock "
                f"{LOCK_NAME!r} is held); see `prefect gcl inspect {LOCK_NAME}`"
            )
        me = psutil.Process(os.getpid())
        _held = Holder(this_host(), me.pid, me.create_time(), str(lease))
        try:
            Variable.set(HOLDER_VARIABLE, asdict(_held), overwrite=True)
            with maintain_concurrency_lease(lease, LEASE_SECONDS, raise_on_lease_renewal_failure=True):
                yield
        finally:
            _held = None
            try:
                _forget(lease)
            finally:
                client.release_concurrency_slots_with_lease(lease)


def _forget(lease: UUID) -> None:
    """Drop the record while the lease is still ours, so no later run judges a holder long gone."""
    holder = read_holder()
    if holder is not None and holder.lease_id == str(lease):
        Variable.unset(HOLDER_VARIABLE)
