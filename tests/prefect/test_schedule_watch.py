"""An idle `etlctl` worker claims a run as soon as it is scheduled (Prefect's event stream,
flows.fleet.schedule_watch), not at its next poll: with the poll interval set to ten minutes, a run
created after the worker's last poll still loads within seconds."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import uuid
from pathlib import Path

import psutil
import pytest

from flows.fleet.processes import prefect_executable
from tests.polling import until
from tests.prefect.conftest import online_workers

pytestmark = pytest.mark.prefect

POLL_SECONDS = "600"  # the timed poll never comes during the test


def _source(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE quick (id INTEGER PRIMARY KEY, label TEXT NOT NULL)")
        conn.executemany("INSERT INTO quick VALUES (?, ?)", [(i, f"row {i}") for i in range(100)])
    return f"sqlite:///{path}"


@pytest.fixture
def slow_polling_worker(prefect_server, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.deployments.runner import EntrypointType

    from flows.table import process_table_etl

    pool, name = f"watch-{uuid.uuid4().hex[:8]}", f"watch-{uuid.uuid4().hex[:6]}"
    config = tmp_path / "etlctl.toml"
    config.write_text(
        f'[source]\nurl = "{_source(tmp_path / "source.db")}"\n'
        f'[target]\nurl = "sqlite:///{tmp_path / "target.db"}"\n[tables]\nnames = ["quick"]\n'
    )
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=pool, type="etlctl"))
    process_table_etl.to_deployment(
        name=pool, work_pool_name=pool, entrypoint_type=EntrypointType.MODULE_PATH
    ).apply()
    env = {
        **prefect_server.env(),
        "ETLCTL_CONFIG": str(config),
        "ETLCTL_STATE_DIR": str(tmp_path / "state"),
        "PREFECT_WORKER_QUERY_SECONDS": POLL_SECONDS,
    }
    command = [prefect_executable(), "worker", "start", "--pool", pool, "--type", "etlctl"]
    worker = psutil.Popen(
        [*command, "--limit", "1", "--name", name],
        env=env,
        stdout=(tmp_path / "worker.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        until(lambda: name in online_workers(pool), 90, "the worker online")
        yield f"process-table-etl/{pool}"
    finally:
        family = [worker, *worker.children(recursive=True)]
        for _ in range(2):  # Prefect's worker exits on the second signal
            for proc in family:
                try:
                    os.killpg(os.getpgid(proc.pid), signal.SIGTERM)
                except ProcessLookupError:
                    continue
        _, alive = psutil.wait_procs(family, timeout=30)
        for proc in alive:
            proc.kill()


def _run(deployment: str) -> object:
    from prefect.deployments import run_deployment

    return run_deployment(deployment, parameters={"table": "quick"}, timeout=0, as_subflow=False).id


def _state(run_id) -> str:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id).state.type.value


def test_an_idle_worker_claims_a_new_run_without_waiting_for_its_next_poll(slow_polling_worker):
    # The first run is claimed by the worker's poll at its start or by the event; once it has ended,
    # the worker polled once more (its slot freed) and its next timed poll is ten minutes away.
    first = _run(slow_polling_worker)
    until(lambda: _state(first) == "COMPLETED", 120, "first run completed")
    second = _run(slow_polling_worker)
    until(lambda: _state(second) == "COMPLETED", 60, "second run completed before the next poll")
