"""Reading many flow runs from the Prefect API, which answers at most API_PAGE runs per request.

    with get_client(sync_client=True) as client:
        runs = runs_by_id(client, ids)          # the orchestrator's poll: one request per 200 runs
        running = all_runs(client, running_filter)

Every reader of more than a page goes through here, so none of them silently stops at 200.
"""

from __future__ import annotations

from collections.abc import Collection
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.sorting import FlowRunSort

API_PAGE = 200  # the most runs the API returns for one filter request
_ATTEMPTS = 5


def runs_by_id(client: SyncPrefectClient, ids: Collection[UUID], page: int = API_PAGE) -> list[FlowRun]:
    """The runs with these ids, one request per `page` ids."""
    wanted = sorted(ids)
    return [
        run
        for at in range(0, len(wanted), page)
        for run in client.read_flow_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=wanted[at : at + page])), limit=page
        )
    ]


def all_runs(
    client: SyncPrefectClient, flow_run_filter: FlowRunFilter, page: int = API_PAGE
) -> list[FlowRun]:
    """Every run matching the filter, page by page.

    Runs enter and leave a state filter while the pages are read, which can shift a run from one
    page to the next unseen; the read is repeated until it agrees with the API's own count.
    """
    for _ in range(_ATTEMPTS):
        found: dict[UUID, FlowRun] = {}
        offset = 0
        while True:
            batch = client.read_flow_runs(
                flow_run_filter=flow_run_filter, sort=FlowRunSort.ID_DESC, limit=page, offset=offset
            )
            found.update((run.id, run) for run in batch)
            if len(batch) < page:
                break
            offset += page
        if len(found) == client.count_flow_runs(flow_run_filter=flow_run_filter):
            break
    return list(found.values())
