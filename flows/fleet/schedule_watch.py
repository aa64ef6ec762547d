"""Wake a worker as soon as a flow run is scheduled in its pool, from Prefect's own event stream.

An idle worker otherwise learns of a new run only at its next poll (every
PREFECT_WORKER_QUERY_SECONDS, 2 s for etlctl's workers): a batch's first tables wait half of
that on average, and the last of several idle workers nearly all of it. Prefect's server emits
`prefect.flow-run.Scheduled` for every run it creates in the pool, bulk creation included, so the
worker subscribes to those events (one websocket, as its cancellation observer already holds) and
polls at once.

The server emits the event inside the transaction that creates the run (Prefect's own suspension
observer confirms its events by a read for the same reason), so a poll that follows the event at
once can miss the run: every burst of events wakes the worker once more RECHECK_SECONDS later.
The timed poll stays as it was: without the stream (a proxy refusing websockets, a server
restart), the worker claims exactly as before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from uuid import UUID

import anyio
import anyio.abc
from prefect.events.clients import get_events_subscriber
from prefect.events.filters import EventFilter, EventNameFilter, EventRelatedFilter

SCHEDULED_EVENTS = ["prefect.flow-run.Scheduled", "prefect.flow-run.AwaitingRetry"]
RECHECK_SECONDS = 0.5
RESUBSCRIBE_SECONDS = 10.0


def scheduled_in_pool(pool_id: UUID) -> EventFilter:
    """Events of runs entering a scheduled state in this pool."""
    return EventFilter(
        event=EventNameFilter(name=SCHEDULED_EVENTS),
        related=EventRelatedFilter(id=[f"prefect.work-pool.{pool_id}"]),
    )


async def wake_on_schedule(pool_id: UUID, wake: Callable[[], None], logger: logging.Logger | Any) -> None:
    """Call `wake` when a run is scheduled in the pool, and once more shortly after each burst.

    Never returns; a lost subscription is made again after RESUBSCRIBE_SECONDS, and the first
    failure in a row is logged as a warning (the timed poll carries on meanwhile).
    """
    warned = False
    while True:
        try:
            async with (
                get_events_subscriber(
                    filter=scheduled_in_pool(pool_id), reconnect_on_clean_close=True
                ) as events,
                anyio.create_task_group() as group,
            ):
                warned = False
                recheck = _Recheck(wake)
                async for _event in events:
                    wake()
                    recheck.arm(group)
        except Exception as exc:
            if not warned:
                logger.warning(
                    "Not subscribed to new runs in the pool (%s); claiming at each poll instead", exc
                )
            warned = True
        await anyio.sleep(RESUBSCRIBE_SECONDS)


class _Recheck:
    """At most one delayed wake pending: a burst of a hundred events costs two polls, not a hundred."""

    def __init__(self, wake: Callable[[], None]) -> None:
        self._wake = wake
        self._pending = False

    def arm(self, group: anyio.abc.TaskGroup) -> None:
        if not self._pending:
            self._pending = True
            group.start_soon(self._later)

    async def _later(self) -> None:
        await anyio.sleep(RECHECK_SECONDS)
        self._pending = False
        self._wake()
