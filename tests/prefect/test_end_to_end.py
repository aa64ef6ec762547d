"""The whole system against real parts: `etlctl run` through the Prefect server, the four
deployments and three `prefect worker start` processes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import psutil
import pytest
from sqlalchemy import create_engine, text

from flows.demo.sample import INCREMENTAL_TABLES, mutate_sample
from flows.etl.fingerprint import fingerprint
from flows.orchestrator import batch_tag
from tests.polling import until
from tests.prefect.conftest import ETLCTL, WORKERS, online_workers

pytestmark = pytest.mark.prefect

DEPLOYMENTS = (
    "main-etl-job/main-etl-deployment",
    "process-table-etl/process-table-etl-deployment",
    "cleanup-flow-1/cleanup-flow-1-deployment",
    "cleanup-flow-2/cleanup-flow-2-deployment",
)


def _client():
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def _batch(stdout: str) -> str:
    found = re.findall(r"^batch (\S+): ", stdout, flags=re.MULTILINE)
    assert found, stdout
    return found[-1]


def _batch_runs(batch: str) -> dict[str, str]:
    """Flow-run name -> state name for every run of the batch (tables are named after themselves)."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    with _client() as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[batch_tag(batch)])), limit=200
        )
    return {run.name: run.state.name for run in runs}


def _history(fleet, batch: str) -> dict[str, tuple[int, str, str]]:
    with create_engine(f"sqlite:///{fleet.work / 'target.db'}").connect() as conn:
        rows = conn.execute(
            text(
                "SELECT table_name, rows_written, worker, outcome FROM _etlctl_runs"
                " WHERE batch_id = :b ORDER BY id"
            ),
            {"b": batch},
        )
        return {name: (written, worker, outcome) for name, written, worker, outcome in rows}


def _identical(fleet, tables) -> list[str]:
    source = create_engine(fleet.source_url)
    target = create_engine(f"sqlite:///{fleet.work / 'target.db'}")
    return [t for t in tables if fingerprint(source, t) != fingerprint(target, t)]


def test_every_table_arrives_then_a_rerun_loads_only_the_changes(fleet):
    first = fleet.etlctl("run")
    assert first.returncode == 0, first.stdout + first.stderr
    batch = _batch(first.stdout)
    tables = sorted(_history(fleet, batch))
    assert len(tables) >= 20
    assert _identical(fleet, tables) == []
    with _client() as client:
        for name in DEPLOYMENTS:
            assert client.read_deployment_by_name(name).name == name.split("/")[1]
    states = _batch_runs(batch)
    assert {states[t] for t in tables} == {"Completed"}
    assert states["cleanup-flow-1"] == states["cleanup-flow-2"] == "Completed"
    assert {worker for _, worker, _ in _history(fleet, batch).values()} == set(WORKERS)
    with create_engine(f"sqlite:///{fleet.work / 'target.db'}").connect() as conn:
        summary = conn.execute(
            text("SELECT tables, succeeded, failed FROM _etlctl_batches WHERE batch_id = :b"), {"b": batch}
        ).one()
    assert tuple(summary) == (len(tables), len(tables), "[]")

    changed = mutate_sample(fleet.source_url)
    second = fleet.etlctl("run")
    assert second.returncode == 0, second.stdout + second.stderr
    history = _history(fleet, _batch(second.stdout))
    for table, count in changed.items():
        assert history[table][0] == count, table
    assert _identical(fleet, tables) == []


def test_a_failing_table_fails_the_run_by_name_and_spares_the_others(fleet):
    target = create_engine(f"sqlite:///{fleet.work / 'target.db'}")
    with target.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS products"))
        conn.execute(text('CREATE TABLE products (id INTEGER, "added by hand" TEXT NOT NULL)'))
    try:
        proc = fleet.etlctl("run", "products", "categories", "customers", "select")
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "3 of 4 tables succeeded; failed: products" in proc.stdout
        batch = _batch(proc.stdout)
        states = _batch_runs(batch)
        assert states["products"] == "Failed"
        assert states["cleanup-flow-1"] == states["cleanup-flow-2"] == "Completed"
        assert _identical(fleet, ["categories", "customers", "select"]) == []
        from prefect.client.schemas.filters import FlowFilter, FlowFilterName
        from prefect.client.schemas.sorting import FlowRunSort

        with _client() as client:
            (orchestrator,) = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=["main-etl-job"])),
                sort=FlowRunSort.START_TIME_DESC,
                limit=1,
            )
        assert orchestrator.state.type.value == "FAILED"
        assert "1 of 4 tables failed: products" in orchestrator.state.message
    finally:
        with target.begin() as conn:
            conn.execute(text("DROP TABLE products"))


def test_single_flow_variant_honours_the_database_tag_limit(fleet):
    proc = subprocess.run(
        [sys.executable, "-m", "flows.single_flow", *sorted(INCREMENTAL_TABLES), "products", "categories"],
        env=fleet.env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "6 tables loaded" in proc.stdout
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

    with _client() as client:
        runs = client.read_task_runs(
            task_run_filter=TaskRunFilter(
                name=TaskRunFilterName(any_=[*INCREMENTAL_TABLES, "products", "categories"])
            ),
            limit=200,
        )
    spans = [(r.start_time, r.end_time) for r in runs if r.start_time and r.end_time]
    # Without the tag limit the thread pool starts all six at once; with it, never more than three.
    # (The tables load in ~50 ms and Prefect grants tag slots ~2 s apart, so overlap is not assured.)
    most = max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)
    assert len(spans) == 6 and most <= 3, f"{most} of {len(spans)} tables loaded at once; the limit is 3"


def test_a_killed_worker_comes_back_under_its_name(fleet):
    def worker(name: str) -> psutil.Process | None:
        for proc in fleet.supervisor.children():
            try:
                if name in proc.cmdline():
                    return proc
            except psutil.Error:  # the killed worker, until the supervisor reaps it
                continue
        return None

    victim = worker("e2e-02")
    assert victim is not None
    killed_at = time.time()
    os.kill(victim.pid, signal.SIGKILL)
    back = until(lambda: (p := worker("e2e-02")) and p.pid != victim.pid and p, 15, "restarted e2e-02")
    assert back.is_running()
    with _client() as client:

        def beat() -> bool:
            workers = client.read_workers_for_work_pool(fleet.config.prefect.table_pool)
            return any(w.name == "e2e-02" and w.last_heartbeat_time.timestamp() > killed_at for w in workers)

        until(beat, 60, "heartbeat from the restarted e2e-02")


def test_ctrl_c_stops_every_worker_and_leaves_no_process(fleet):
    supervisor = psutil.Popen(
        [ETLCTL, "workers", "start", "-n", "2", "--prefix", "ctrlc"],
        env=fleet.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    until(
        lambda: {"ctrlc-01", "ctrlc-02"} <= online_workers(fleet.config.prefect.table_pool),
        90,
        "online workers",
    )
    family = [supervisor, *supervisor.children(recursive=True)]
    assert len(family) >= 3
    supervisor.send_signal(signal.SIGINT)
    assert supervisor.wait(timeout=60) == 0
    _, alive = psutil.wait_procs(family, timeout=10)
    assert alive == []
    leftovers = [
        p
        for p in psutil.process_iter(["cmdline"])
        if any("ctrlc-0" in part for part in p.info["cmdline"] or [])
    ]
    assert leftovers == []
