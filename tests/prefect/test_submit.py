"""The orchestrator's fan-out (flows.submit) against the real server: every table gets exactly one run,
in bulk beyond the server's 100-per-request limit, a retried fan-out creates nothing new, and runs
created from a flow are its subflows.

The runs belong to a deployment of this module's own flow on a pool without workers, so they stay
Scheduled and no other test that reads runs by flow name sees them.
"""

from __future__ import annotations

import uuid

import pytest
from prefect import flow

from flows.submit import BULK_LIMIT, Submission, submit_all

pytestmark = pytest.mark.prefect

TABLES = BULK_LIMIT + 50  # the first by run_deployment, then a full bulk request and a partial one


@flow(name="etlctl-submit-test")
def noop(table: str, batch_id: str | None = None) -> None:
    """Never run: its pool has no worker."""


@pytest.fixture(scope="module")
def deployment(prefect_server) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.deployments.runner import EntrypointType

    pool = f"submit-test-{uuid.uuid4().hex[:8]}"
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=pool, type="etlctl"))
    noop.to_deployment(name=pool, work_pool_name=pool, entrypoint_type=EntrypointType.MODULE_PATH).apply()
    return f"etlctl-submit-test/{pool}"


def _subs(batch: str, count: int) -> list[Submission]:
    return [
        Submission(f"t{i:03d}", f"{batch}:t{i:03d}", {"table": f"t{i:03d}", "batch_id": batch})
        for i in range(count)
    ]


def _read(ids):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    ids = list(ids)
    with get_client(sync_client=True) as client:
        return [
            run
            for at in range(0, len(ids), 200)
            for run in client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids[at : at + 200])), limit=200
            )
        ]


def test_every_table_gets_one_run_and_a_retry_creates_none(deployment):
    subs = _subs("b1", TABLES)
    ids = submit_all(deployment, subs)
    assert list(ids) == [s.name for s in subs]
    runs = {run.id: run for run in _read(ids.values())}
    assert len(runs) == TABLES  # one distinct run per table
    for name, run_id in ids.items():
        run = runs[run_id]
        assert run.name == name and run.parameters == {"table": name, "batch_id": "b1"}
        assert run.state.is_scheduled()
    assert submit_all(deployment, subs) == ids  # the same keys: the same runs, none created


def test_runs_created_from_a_flow_are_its_subflows(deployment):
    from prefect.client.orchestration import get_client
    from prefect.runtime import flow_run as current_run

    @flow
    def parent() -> tuple[str, dict]:
        return current_run.id, submit_all(deployment, _subs("b2", 3))

    parent_id, ids = parent()
    runs = _read(ids.values())
    links = {run.parent_task_run_id for run in runs}
    assert len(runs) == 3 and len(links) == 1 and None not in links
    with get_client(sync_client=True) as client:
        assert str(client.read_task_run(links.pop()).flow_run_id) == parent_id


def test_concurrent_writes_wait_for_the_sqlite_lock_instead_of_failing(deployment, prefect_server):
    """flows.fleet.prefect_server: a Prefect server on SQLite as etlctl starts it answers a burst of
    concurrent run creations without one 503 "database is locked" (Prefect's own server, started as
    `prefect server start`, answered 50 of these 60 with 503 and dropped 4 connections on this 2-core
    host). Sent with plain httpx, which never retries."""
    import asyncio

    import httpx
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        deployment_id = client.read_deployment_by_name(deployment).id

    async def burst() -> list[int | str]:
        gate = asyncio.Semaphore(8)
        async with httpx.AsyncClient(base_url=prefect_server.api_url, timeout=120, trust_env=False) as http:

            async def create(i: int) -> int | str:
                async with gate:
                    try:
                        answer = await http.post(
                            f"/deployments/{deployment_id}/create_flow_run",
                            json={"name": f"burst-{i}", "parameters": {"table": f"burst-{i}"}},
                        )
                    except httpx.TransportError as exc:  # Prefect's server drops some under lock errors
                        return type(exc).__name__
                    return answer.status_code

            return await asyncio.gather(*(create(i) for i in range(60)))

    codes = asyncio.run(burst())
    assert sorted(set(codes)) == [201], codes
