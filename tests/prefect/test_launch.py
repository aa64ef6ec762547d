"""The warm launcher on the real fleet: runs are forked from each worker's fork server, which sees
config edits without a restart, and a table run killed with SIGKILL ends Crashed and is resubmitted."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from sqlalchemy import create_engine, make_url

from flows.etl.engines import make_engine
from flows.etl.fingerprint import fingerprint
from flows.etl.table_lock import table_lock
from tests.every_table import every_table_differences
from tests.polling import until
from tests.prefect.conftest import WORKERS

pytestmark = pytest.mark.prefect

TABLE_DEPLOYMENT = "process-table-etl/process-table-etl-deployment"
# The run is kept Running by the test holding the table's lock (its load waits for it), not by its
# size: a big table ended before the test could find its process on a fast CI machine.
HELD_ROWS = 1_000


def _client():
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def _fork_servers(fleet) -> dict[int, float]:
    """pid -> start time of every worker's fork server (not of the runs forked from it, which share
    its command line but lead sessions of their own)."""
    found = {}
    for proc in fleet.supervisor.children(recursive=True):
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if "flows.fleet.forkserver" in proc.cmdline() and os.getsid(proc.pid) != proc.pid:
                found[proc.pid] = proc.create_time()
    return found


def _all_warm(fleet) -> dict[int, float]:
    servers = _fork_servers(fleet)
    return servers if len(servers) == len(WORKERS) else {}


@contextlib.contextmanager
def _edited_config(fleet, text: str) -> Iterator[None]:
    path = Path(fleet.env["ETLCTL_CONFIG"])
    original = path.read_text(encoding="utf-8")
    path.write_text(text, encoding="utf-8")
    try:
        yield
    finally:
        path.write_text(original, encoding="utf-8")


def _held_source(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE held (id INTEGER PRIMARY KEY, label TEXT NOT NULL, amount REAL)")
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
            " INSERT INTO held SELECT i, printf('row %08d of the held table', i), i * 0.5 FROM n",
            (HELD_ROWS,),
        )
    return f"sqlite:///{path}"


def test_a_run_from_the_warm_interpreter_sees_a_config_edit_made_after_the_worker_started(fleet, tmp_path):
    warm = until(lambda: _all_warm(fleet), 120, "a fork server for each of the fleet's workers")
    original = Path(fleet.env["ETLCTL_CONFIG"]).read_text(encoding="utf-8")
    old_target = f"sqlite:///{fleet.work / 'target.db'}"
    assert old_target in original
    new_target = f"sqlite:///{tmp_path / 'edited-target.db'}"
    from prefect.deployments import run_deployment

    with _edited_config(fleet, original.replace(old_target, new_target)):
        run = run_deployment(TABLE_DEPLOYMENT, parameters={"table": "currencies"}, timeout=0)
        with _client() as client:
            final = until(
                lambda: (s := client.read_flow_run(run.id).state) and s.is_final() and s, 120, "final state"
            )
    assert final.is_completed(), final
    source, target = create_engine(fleet.source_url), create_engine(new_target)
    try:
        assert fingerprint(target, "currencies") == fingerprint(source, "currencies")
    finally:
        source.dispose()
        target.dispose()
    assert _fork_servers(fleet) == warm  # the same warm interpreters: nothing was restarted


def test_a_table_run_killed_with_sigkill_is_reported_crashed_and_resubmitted(fleet, tmp_path):
    until(lambda: _all_warm(fleet), 120, "a fork server for each of the fleet's workers")
    source_url = _held_source(tmp_path / "held.db")
    target_url = f"sqlite:///{tmp_path / 'held-target.db'}"
    config = f'[source]\nurl = "{source_url}"\n[target]\nurl = "{target_url}"\n[tables]\nnames = ["held"]\n'
    started = time.time()
    with _edited_config(fleet, config):
        import subprocess

        from tests.prefect.conftest import ETLCTL

        target = make_engine(make_url(target_url), "target")
        with table_lock(target, "held"):
            orchestrator = subprocess.Popen(
                [ETLCTL, "run", "held"],
                env=fleet.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            try:
                first = until(lambda: _running(started), 180, "the held table running")
                pid = int(first.infrastructure_pid)
                parent = psutil.Process(pid).parent()
                assert "flows.fleet.forkserver" in parent.cmdline()  # forked from the warm interpreter
                os.kill(pid, signal.SIGKILL)
            except BaseException:
                orchestrator.kill()
                raise
        try:
            out, err = orchestrator.communicate(timeout=600)
        finally:
            if orchestrator.poll() is None:
                orchestrator.kill()
        wrong = every_table_differences(fleet.env["ETLCTL_CONFIG"])  # the batch's config: every table
    assert orchestrator.returncode == 0, out + err
    with _client() as client:
        crashed = client.read_flow_run(first.id)
    assert crashed.state.is_crashed(), crashed.state
    assert "-9" in (crashed.state.message or "") or "SIGKILL" in (crashed.state.message or ""), crashed.state
    runs = _runs_of("held", started)
    assert sorted(r.state.name for r in runs) == ["Completed", "Crashed"]
    assert wrong == []


def _runs_of(table: str, since: float) -> list:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName, FlowRunFilterStartTime
    from prefect.types._datetime import from_timestamp

    with _client() as client:
        return client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                name=FlowRunFilterName(any_=[table]),
                start_time=FlowRunFilterStartTime(after_=from_timestamp(since)),
            ),
            limit=50,
        )


def _running(since: float):
    return next((r for r in _runs_of("held", since) if r.state.is_running() and r.infrastructure_pid), None)
