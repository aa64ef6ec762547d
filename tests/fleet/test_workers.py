"""Real `prefect worker start` processes under WorkerSupervisor: named, restarted, stopped clean."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime

import psutil
import pytest

from flows.fleet.processes import flow_run_processes, is_alive, signal_groups
from flows.fleet.server import ServerHandle
from flows.fleet.workers import WorkerSupervisor
from tests.polling import until

pytestmark = pytest.mark.prefect

# Workers poll every 2 s instead of 10 s, so a run is claimed quickly.
FAST = {"PREFECT_WORKER_QUERY_SECONDS": "2", "PREFECT_WORKER_PREFETCH_SECONDS": "2"}

NAP_FLOW = """
import time

from prefect import flow


@flow
def nap(seconds: float = 300.0) -> None:
    time.sleep(seconds)
"""

SUPERVISOR = """
import logging, sys
from flows.fleet.workers import WorkerSupervisor

logging.basicConfig(level=logging.INFO)
WorkerSupervisor(sys.argv[1], 2, prefix=sys.argv[2], log_dir=sys.argv[3]).run_forever(tick=0.2)
"""


def _client():
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def _make_pool(name: str) -> None:
    from prefect.client.schemas.actions import WorkPoolCreate

    with _client() as client:
        client.create_work_pool(WorkPoolCreate(name=name, type="process"))


def _heartbeats(pool: str) -> dict[str, datetime]:
    with _client() as client:
        return {w.name: w.last_heartbeat_time for w in client.read_workers_for_work_pool(pool)}


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


def _tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def test_workers_register_by_name_and_come_back_after_kill_9(
    prefect_server: ServerHandle, prefect_env: dict[str, str], tmp_path
):
    pool = "fleet-restart"
    _make_pool(pool)
    supervisor = WorkerSupervisor(pool, 3, prefix="t1", extra_env={**prefect_env, **FAST}, log_dir=tmp_path)
    thread = threading.Thread(target=supervisor.run_forever, kwargs={"tick": 0.2})
    thread.start()
    seen: list[psutil.Process] = []
    try:
        names = {"t1-01", "t1-02", "t1-03"}
        until(lambda: names <= set(_heartbeats(pool)), 60, "three registered workers")
        name, old_pid, _ = supervisor.workers()[1]
        seen += _tree(old_pid)
        os.kill(old_pid, signal.SIGKILL)

        def restarted():
            return next(
                (w for w in supervisor.workers() if w[0] == name and w[1] not in (None, old_pid)),
                None,
            )

        _, new_pid, restarts = until(restarted, 5, f"new {name} process")
        assert restarts == 1
        seen += _tree(new_pid)
        born = datetime.fromtimestamp(psutil.Process(new_pid).create_time(), UTC)
        until(lambda: _heartbeats(pool)[name] > born, 30, f"heartbeat from the new {name}")
        assert sorted(w[0] for w in supervisor.workers()) == sorted(names)
        assert all(pid is not None for _, pid, _ in supervisor.workers())
        seen += [p for _, pid, _ in supervisor.workers() for p in _tree(pid)]
        assert sorted(p.name for p in tmp_path.iterdir()) == [f"{n}.log" for n in sorted(names)]
    finally:
        supervisor.stop()
        thread.join(timeout=30)
    assert not thread.is_alive()
    assert not [p.pid for p in seen if is_alive(p)]


def test_second_ctrl_c_during_the_drain_stops_workers_and_their_flow_runs(
    prefect_server: ServerHandle, prefect_env: dict[str, str], tmp_path
):
    pool = "fleet-interrupt"
    _make_pool(pool)
    (tmp_path / "fleet_nap.py").write_text(NAP_FLOW)
    with _client() as client:
        deployment = client.create_deployment(
            flow_id=client.create_flow_from_name("nap"),
            name="fleet-test",
            entrypoint="fleet_nap.nap",
            work_pool_name=pool,
            pull_steps=[],
        )
        run_id = client.create_flow_run_from_deployment(deployment).id
    env = {**prefect_env, **FAST, "PYTHONPATH": str(tmp_path)}
    command = [sys.executable, "-c", SUPERVISOR, pool, "t2", str(tmp_path / "logs")]
    output = tmp_path / "supervisor.log"
    # Its own session: the SIGINT below goes to its group, as a Ctrl+C in a terminal would.
    supervisor = subprocess.Popen(
        command, env=env, stdout=output.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
    )
    try:

        def running():
            with _client() as client:
                return client.read_flow_run(run_id).state.is_running()

        until(running, 90, "running flow run")
        flow_runs = until(
            lambda: [p for w in psutil.Process(supervisor.pid).children() for p in flow_run_processes(w)],
            10,
            "flow-run process",
        )
        procs = _tree(supervisor.pid)
        assert len([p for p in procs if "worker" in _cmdline(p)]) == 2
        assert all(os.getpgid(p.pid) != supervisor.pid for p in flow_runs)

        os.killpg(supervisor.pid, signal.SIGINT)
        until(lambda: "draining: 1 table running" in output.read_text(), 15, "the drain line")
        # the nap has 300 s to go: the drain waits for it, the idle worker has left already
        until(
            lambda: len([p for p in _tree(supervisor.pid) if "worker" in _cmdline(p)]) == 1, 30, "idle exit"
        )
        assert supervisor.poll() is None and all(is_alive(p) for p in flow_runs)
        assert running()

        os.killpg(supervisor.pid, signal.SIGINT)
        assert supervisor.wait(timeout=40) == 0
        assert "stopping now: 1 table running, interrupted" in output.read_text()
        assert not [(p.pid, _cmdline(p)) for p in procs if is_alive(p)]
    finally:
        if supervisor.poll() is None:
            signal_groups(_tree(supervisor.pid), signal.SIGKILL)
            supervisor.wait()

    def final_state():
        with _client() as client:
            state = client.read_flow_run(run_id).state
        return state if state.is_final() else None

    assert until(final_state, 15, "final flow-run state").is_crashed()
