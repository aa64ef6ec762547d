"""Pruning old flow runs of etlctl's flows, so that the Prefect database stops growing.

    with get_client(sync_client=True) as client:
        prune_flow_runs(client, keep_days=30, flows=ETLCTL_FLOWS, keep_tags=["etl-batch:..."])

Only finished runs (Completed, Failed, Cancelled, Crashed) whose end is older than `keep_days` go,
and only runs of the named flows: other flows sharing the server are not etlctl's to delete.
Deleting a run deletes its task runs and states, and the server then deletes its logs.
The table history in the target (`_etlctl_runs`) is pruned separately (flows.etl.maintenance).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Collection

from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterEndTime,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.exceptions import ObjectNotFound

from flows.fleet.flow_runs import API_PAGE

FINISHED = [StateType.COMPLETED, StateType.FAILED, StateType.CANCELLED, StateType.CRASHED]


def prune_flow_runs(
    client: SyncPrefectClient,
    keep_days: float,
    flows: Collection[str],
    keep_tags: Collection[str] = (),
    now: dt.datetime | None = None,
) -> int:
    """Delete the finished runs of `flows` that ended more than `keep_days` ago, except runs
    carrying any of `keep_tags` (the batch being cleaned up); returns how many were deleted."""
    cutoff = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(days=keep_days)
    old = FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=FINISHED)),
        end_time=FlowRunFilterEndTime(before_=cutoff),
    )
    named = FlowFilter(name=FlowFilterName(any_=list(flows)))
    found, offset = {}, 0
    while True:
        page = client.read_flow_runs(
            flow_filter=named, flow_run_filter=old, sort=FlowRunSort.ID_DESC, limit=API_PAGE, offset=offset
        )
        found.update((run.id, run) for run in page)
        if len(page) < API_PAGE:
            break
        offset += API_PAGE
    doomed = [run.id for run in found.values() if not set(run.tags) & set(keep_tags)]
    for run_id in doomed:
        with contextlib.suppress(ObjectNotFound):  # deleted meanwhile by another cleanup
            client.delete_flow_run(run_id)
    return len(doomed)
