"""A worker killed with kill -9 while it runs a table, then that table's own run process killed too,
on the session fleet (`etlctl workers start` restarts the worker under its name).

The run outlives its worker (the fork server never kills it); once its process dies as well no one
is left to report it, so the restarted worker finds it Running without a process and marks it
Crashed; the orchestrator resubmits it and the batch ends 0. The table's run waits Running at its
per-table lock, held by the test, so the kills land mid-run without any sleep; that run never loaded,
so the table is loaded once. Ends comparing every table with its source.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from contextlib import ExitStack

import psutil
import pytest
from sqlalchemy import create_engine, inspect, text

from flows.etl.table_lock import table_lock
from flows.fleet.naming import WORKER_LABEL
from tests.every_table import every_table_differences
from tests.polling import until
from tests.prefect.conftest import ETLCTL

pytestmark = pytest.mark.prefect

TABLE = "measurements"
TABLES = (TABLE, "categories", "customers")


def _runs_of(table: str, since: float) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName, FlowRunFilterStartTime
    from prefect.types._datetime import from_timestamp

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                name=FlowRunFilterName(any_=[table]),
                start_time=FlowRunFilterStartTime(after_=from_timestamp(since)),
            ),
            limit=50,
        )


def _worker(fleet, name: str) -> psutil.Process | None:
    for proc in fleet.supervisor.children():
        try:
            if name in proc.cmdline() and proc.status() != psutil.STATUS_ZOMBIE:
                return proc
        except psutil.Error:
            continue
    return None


def _successes(target) -> int:
    if TABLE not in inspect(target).get_table_names():
        return 0
    with target.connect() as conn:
        query = "SELECT count(*) FROM _etlctl_runs WHERE table_name = :t AND outcome = 'success'"
        return conn.execute(text(query), {"t": TABLE}).scalar_one()


def test_a_worker_and_then_its_runs_process_killed_mid_table_end_in_one_load(fleet):
    target = create_engine(fleet.config.target_url)
    present = set(inspect(target).get_table_names()) if os.path.exists(fleet.work / "target.db") else set()
    loads_before = _successes(target) if present else 0
    started = time.time()
    held = ExitStack()
    held.enter_context(table_lock(target, TABLE, fleet.config.target_schema))
    err = (fleet.work / "worker-kill.err").open("w")
    batch = subprocess.Popen(
        [ETLCTL, "run", *TABLES], env=fleet.env, stdout=subprocess.PIPE, stderr=err, text=True
    )
    try:
        first = until(
            lambda: next(
                (r for r in _runs_of(TABLE, started) if r.state.is_running() and r.infrastructure_pid), None
            ),
            180,
            f"{TABLE} running",
        )
        name = first.labels[WORKER_LABEL]
        worker = _worker(fleet, name)
        run_process = psutil.Process(int(str(first.infrastructure_pid).rsplit(":", 1)[-1]))
        worker.kill()
        until(lambda: (p := _worker(fleet, name)) and p.pid != worker.pid, 60, f"{name} restarted")
        assert run_process.is_running()  # the run outlives its worker, still Running, still waiting
        run_process.kill()
        killed_at = time.monotonic()

        def crashed():
            (run,) = [r for r in _runs_of(TABLE, started) if r.id == first.id]
            return run if run.state.is_crashed() else None

        crash = until(crashed, 180, "the headless run marked Crashed")
        print(f"\nrun process kill -9 to Crashed: {time.monotonic() - killed_at:.1f} s")
        held.close()  # the resubmitted run may load now
        out, _ = batch.communicate(timeout=300)
        print(f"run process kill -9 to batch end: {time.monotonic() - killed_at:.1f} s")
    finally:
        held.close()
        if batch.poll() is None:
            os.kill(batch.pid, signal.SIGKILL)
    assert batch.returncode == 0, out + (fleet.work / "worker-kill.err").read_text()[-3000:]
    assert "is gone" in crash.state.message and "resubmitted" in crash.state.message, crash.state
    assert sorted(r.state.name for r in _runs_of(TABLE, started)) == ["Completed", "Crashed"]
    assert _successes(target) == loads_before + 1  # loaded once: the killed run never wrote
    assert (
        every_table_differences(fleet.env["ETLCTL_CONFIG"], loaded=present_user(present) | set(TABLES)) == []
    )


def present_user(tables: set[str]) -> set[str]:
    return {t for t in tables if not t.startswith("_etlctl_")}
