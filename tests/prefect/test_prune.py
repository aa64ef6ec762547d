"""cleanup-flow-1's pruning of old flow runs, against the session's real Prefect server: only
finished runs of the named flows that ended before the cutoff go; runs of the batch being cleaned
up, unfinished runs and other flows' runs stay."""

from __future__ import annotations

import secrets

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound
from prefect.states import Completed, Failed, Running, Scheduled

from flows.fleet.prune import prune_flow_runs
from flows.names import batch_tag

pytestmark = pytest.mark.prefect


def _exists(client, run_id) -> bool:
    try:
        client.read_flow_run(run_id)
    except ObjectNotFound:
        return False
    return True


def test_only_finished_runs_of_other_batches_older_than_the_cutoff_go(prefect_server):
    token = secrets.token_hex(4)
    ours, theirs = f"prune-etl-{token}", f"prune-other-{token}"

    @flow(name=ours)
    def etl_flow() -> None: ...

    @flow(name=theirs)
    def other_flow() -> None: ...

    old, current = batch_tag(f"old-{token}"), batch_tag(f"now-{token}")
    plan = {
        "old completed": (etl_flow, old, Completed()),
        "old failed": (etl_flow, old, Failed()),
        "old running": (etl_flow, old, Running()),
        "current completed": (etl_flow, current, Completed()),
        "scheduled": (etl_flow, None, Scheduled()),
        "other flow completed": (other_flow, old, Completed()),
    }
    with get_client(sync_client=True) as client:
        runs = {}
        for what, (fn, tag, state) in plan.items():
            run = client.create_flow_run(fn, tags=[tag] if tag else [])
            client.set_flow_run_state(run.id, state, force=True)
            runs[what] = run.id

        assert prune_flow_runs(client, 30, [ours], keep_tags=[current]) == 0
        assert all(_exists(client, run_id) for run_id in runs.values())

        assert prune_flow_runs(client, 0, [ours], keep_tags=[current]) == 2
        left = {what for what, run_id in runs.items() if _exists(client, run_id)}
        assert left == {"old running", "current completed", "scheduled", "other flow completed"}

        assert prune_flow_runs(client, 0, [ours]) == 1  # without the batch to keep, it goes too
        assert not _exists(client, runs["current completed"])
