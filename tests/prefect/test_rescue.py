"""A worker killed between claiming a table run and starting it: the table is resubmitted within
seconds, not after the orchestrator's 300 s Pending limit, and loads once (issue 9).

The claim is held open for certain by freezing (SIGSTOP) every worker's fork server before the
batch starts: a worker then claims the run, labels it and waits for a process that never comes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

import psutil
import pytest
from sqlalchemy import create_engine, text

from tests.polling import until
from tests.prefect.conftest import ETLCTL, WORKERS, online_workers

pytestmark = pytest.mark.prefect

TABLE = "categories"


def _workers(fleet) -> dict[str, psutil.Process]:
    found = {}
    for proc in fleet.supervisor.children():
        with contextlib.suppress(psutil.Error):
            cmd = proc.cmdline()
            if "--name" in cmd:
                found[cmd[cmd.index("--name") + 1]] = proc
    return found


def _fork_servers(worker: psutil.Process) -> list[psutil.Process]:
    return [p for p in worker.children() if "flows.fleet.forkserver" in " ".join(p.cmdline())]


def _thaw(servers) -> None:
    for server in servers:
        with contextlib.suppress(psutil.Error):
            server.send_signal(signal.SIGCONT)


def _kill(proc: psutil.Process) -> None:
    with contextlib.suppress(psutil.Error):
        proc.kill()


def _states(run_id):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return sorted(client.read_flow_run_states(run_id), key=lambda s: s.timestamp)


def _late_end(run_id):
    """The run's end after it was given up (Crashed, then Running, then this), once it has one."""
    latest = _states(run_id)[-1]
    return latest if latest.is_final() and not latest.is_crashed() else None


def _claimed_run():
    """The newest run of TABLE if a worker has claimed it and not started it: (run, worker name)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[TABLE])),
            sort=FlowRunSort.EXPECTED_START_TIME_DESC,
            limit=1,
        )
    run = runs[0] if runs else None
    worker = (run.labels or {}).get("prefect.worker.name") if run else None
    if run and run.state.is_pending() and worker and not run.infrastructure_pid:
        return run, worker
    return None


@pytest.mark.parametrize(
    ("fate", "told"),
    [
        # the supervisor brings it back and it gives the run back, unless (on a loaded host) the
        # orchestrator's heartbeat rule sees the silent worker first: either rescue is a rescue
        ("kill", ("has no process for the run it claimed", "stopped heartbeating after claiming")),
        # it stays silent, the orchestrator resubmits; thawed, it starts the old run, which must not load
        ("freeze", ("stopped heartbeating after claiming",)),
    ],
)
def test_a_worker_lost_between_claim_and_start_costs_seconds_not_minutes(fleet, fate, told):
    until(lambda: all(_fork_servers(w) for w in _workers(fleet).values()), 60, "warm fork servers")
    frozen = [fs for w in _workers(fleet).values() for fs in _fork_servers(w)]
    for server in frozen:
        server.send_signal(signal.SIGSTOP)
    run = subprocess.Popen(
        [ETLCTL, "run", TABLE], env=fleet.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    victim, gone = None, []
    try:
        first, claimer = until(_claimed_run, 60, "a claimed, unstarted run")
        victim = _workers(fleet)[claimer]
        gone = _fork_servers(victim)  # its fork request is queued there: never let it through
        if fate == "kill":  # the worker dies holding the claim; the supervisor restarts it, same name
            victim.kill()
            for server in gone:  # after the worker, which would otherwise see it go and give up the run
                server.kill()
        else:
            victim.send_signal(signal.SIGSTOP)
        lost_at = time.monotonic()
        _thaw(s for s in frozen if s not in gone)
        stdout, stderr = run.communicate(timeout=120)
        took = time.monotonic() - lost_at
        print(f"{fate}: the batch ended {took:.1f} s after its claiming worker was lost")
        assert run.returncode == 0, stdout + stderr
        assert took < 90, f"the batch took {took:.0f} s after the claimer was lost"  # unrescued: 300 s
        state = _states(first.id)[-1]
        assert state.is_crashed() and any(why in state.message for why in told), state
        if fate == "freeze":  # thawed, the worker starts the run it claimed: that run must not load
            _thaw([victim, *gone])
            late = until(lambda: _late_end(first.id), 120, "the late run to end")
            assert late.name == "Cancelled" and "given up" in late.message, late
    finally:
        _thaw([*frozen, *([victim] if victim else [])])  # never leave the shared fleet frozen
        if run.poll() is None:
            os.kill(run.pid, signal.SIGKILL)
    batch = stdout.split("batch ")[-1].split(":")[0]
    with create_engine(f"sqlite:///{fleet.work / 'target.db'}").connect() as conn:
        loads = conn.execute(
            text("SELECT outcome FROM _etlctl_runs WHERE batch_id = :b AND table_name = :t"),
            {"b": batch, "t": TABLE},
        ).all()
    assert [row.outcome for row in loads] == ["success"]
    until(lambda: online_workers(fleet.config.prefect.table_pool) >= set(WORKERS), 90, "the fleet back")
