"""One orchestrator at a time across the whole fleet, held in Prefect rather than in a local file.

Two hosts' crontabs (or a cron line and a person at a terminal) cannot overlap: `etlctl run` takes
the single slot of the global concurrency limit `etlctl-orchestrator` without waiting. The slot is a
lease that the holder renews; if the holder dies, Prefect reclaims it when the lease expires.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import httpx
from prefect.client.orchestration import get_client
from prefect.concurrency.asyncio import ConcurrencySlotAcquisitionError
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectNotFound

from flows.errors import AlreadyRunningError, PrefectUnavailableError
from flows.names import LOCK_NAME

LEASE_SECONDS = 60.0
_NOISY = "prefect._internal.concurrency"


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


def _drop_refused_slot(record: logging.LogRecord) -> bool:
    return not (record.args and "ConcurrencySlotAcquisition" in str(record.args[0]))


# A refused slot is the answer we expect, not a fault worth a traceback in cron mail; Prefect's
# acquisition service logs it from its own thread, so its logger stays quiet in this process.
logging.getLogger(_NOISY).addFilter(_drop_refused_slot)


def http_status(exc: BaseException) -> int | None:
    """The HTTP status of the API answer behind `exc` (Prefect wraps it in its own errors), if any."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, httpx.HTTPStatusError):
            return seen.response.status_code
        seen = seen.__cause__ or seen.__context__
    return None


@contextmanager
def orchestrator_lock() -> Iterator[None]:
    """Hold the fleet-wide slot for the block; AlreadyRunningError (exit 75) if it is taken."""
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(LOCK_NAME)
        except ObjectNotFound:
            raise PrefectUnavailableError(
                f"the fleet-wide lock {LOCK_NAME!r} does not exist yet: run `etlctl setup`"
            ) from None
    held = ExitStack()
    try:
        held.enter_context(
            concurrency(LOCK_NAME, occupy=1, max_retries=0, lease_duration=LEASE_SECONDS, strict=True)
        )
    except ConcurrencySlotAcquisitionError as exc:
        if http_status(exc) != httpx.codes.LOCKED:
            raise PrefectUnavailableError(f"could not take the lock {LOCK_NAME!r}: {exc}") from None
        raise AlreadyRunningError(
            "skipped: another orchestrator run is active in the fleet (lock "
            f"{LOCK_NAME!r} is held); see `prefect gcl inspect {LOCK_NAME}`"
        ) from None
    with held:
        yield
