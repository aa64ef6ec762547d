"""The inventory's view of a host, against the session's real Prefect server: a host owns only the
workers named after it, and every running run counts, however many there are."""

from __future__ import annotations

import pytest
from prefect import flow

from flows.fleet.flow_runs import API_PAGE
from flows.fleet.naming import WORKER_LABEL

pytestmark = pytest.mark.prefect

POOL = "machines-probe"
RUNS = API_PAGE + 5  # more than the API returns in one answer


@flow(name="machines-probe")
def _probe() -> None:
    """Never run: only a flow for the probe's flow runs to belong to."""


def _running_runs(client, count: int, worker: str) -> list[str]:
    """`count` Running runs of the probe flow, each labelled as `worker`'s: one request per run,
    where the client's create_flow_run and update_flow_run_labels take three."""
    from prefect.states import Running, to_state_create

    flow_id = str(client.create_flow(_probe))
    state = to_state_create(Running()).model_dump(mode="json")
    return [
        client.request(
            "POST",
            "/flow_runs/",
            json={"flow_id": flow_id, "name": f"probe-{i}", "state": state, "labels": {WORKER_LABEL: worker}},
        ).json()["id"]
        for i in range(count)
    ]


def test_a_host_owns_only_its_workers_and_counts_every_running_run(prefect_server):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.states import Completed

    from flows.fleet.machines import Machine, forget, record, statuses, wait_idle

    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=POOL, type="process"))
        record(Machine.now("db", 1, POOL, "supervisor"))
        record(Machine.now("db-07", 1, POOL, "supervisor"))
        try:
            client.send_worker_heartbeat(POOL, "db-07-01")
            runs = _running_runs(client, RUNS, "db-07-01")
            by_host = {s.machine.host: s for s in statuses()}
            # `db` has no worker of its own: db-07-01 belongs to host db-07
            assert (by_host["db"].live_workers, by_host["db"].verdict) == ([], "down")
            assert by_host["db"].runs_in_progress == 0
            assert by_host["db-07"].live_workers == ["db-07-01"]
            assert by_host["db-07"].runs_in_progress == RUNS
            assert wait_idle("db", timeout=0)
            assert not wait_idle("db-07", timeout=0)
            for run in runs:
                client.set_flow_run_state(run, Completed(), force=True)
            assert wait_idle("db-07", timeout=0)
        finally:
            forget("db")
            forget("db-07")
            client.delete_work_pool(POOL)
