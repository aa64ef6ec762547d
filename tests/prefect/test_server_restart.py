"""The Prefect server stops in the middle of a batch and comes back on the same port and home: the
batch still ends, every table is loaded exactly once, and every target table equals its source.

The server is the test's own (the session's must not go down). Its table runs are held Running at
the table's lock in the target while the server is down, so the outage falls
in the middle of loading whatever the load on this host."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from sqlalchemy import create_engine, text

from flows.demo.sample import build_sample
from flows.etl.table_lock import table_lock
from flows.fleet.server import ServerHandle, start_server
from flows.names import LOCK_NAME, TABLE_FLOW
from tests.every_table import every_table_differences
from tests.polling import until
from tests.prefect.conftest import ETLCTL

pytestmark = pytest.mark.prefect
TABLES = ("customers", "orders", "products", "categories", "currencies")
OUTAGE = 10.0  # seconds the server stays down, on top of its own stop and start
WORKERS = ("srv-01", "srv-02")


def _api(server: ServerHandle):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    @contextlib.contextmanager
    def client() -> Iterator:
        with temporary_settings({PREFECT_API_URL: server.api_url}), get_client(sync_client=True) as c:
            yield c

    return client


def _table_runs(server: ServerHandle) -> list:
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with _api(server)() as client:
        return client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[TABLE_FLOW])), limit=200
        )


def _online(server: ServerHandle, pool: str, since: float = 0.0) -> set[str]:
    with _api(server)() as client:
        return {
            w.name
            for w in client.read_workers_for_work_pool(pool)
            if w.status == "ONLINE" and w.last_heartbeat_time and w.last_heartbeat_time.timestamp() > since
        }


def _config(work: Path) -> Path:
    path = work / "etlctl.toml"
    names = ", ".join(f'"{t}"' for t in TABLES)
    path.write_text(
        f'[source]\nurl = "sqlite:///{work / "source.db"}"\n'
        f'[target]\nurl = "sqlite:///{work / "target.db"}"\n'
        f"[tables]\nnames = [{names}]\n"
        '[table.customers]\nmode = "incremental"\ncursor = "updated_at"\n',
        encoding="utf-8",
    )
    return path


@contextlib.contextmanager
def _held(target: Path) -> Iterator[None]:
    """Every table's run waits, Running, for the table's lock in the target until the block ends.

    The lock each load takes (flows.etl.table_lock), not the target's write lock: `etlctl run`
    itself writes to the target before it submits anything, and must not wait.
    """
    engine = create_engine(f"sqlite:///{target}")
    try:
        with contextlib.ExitStack() as stack:
            for table in TABLES:
                stack.enter_context(table_lock(engine, table))
            yield
    finally:
        engine.dispose()


def _stop_family(proc: psutil.Popen) -> None:
    if not proc.is_running():
        return
    family = [proc, *proc.children(recursive=True)]
    proc.send_signal(signal.SIGINT)
    _, alive = psutil.wait_procs(family, timeout=60)
    for member in alive:
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            os.killpg(os.getpgid(member.pid), signal.SIGKILL)


def test_a_server_restart_mid_batch_loses_no_table_and_loads_none_twice(tmp_path):
    home = tmp_path / "prefect"
    server = start_server(home, timeout=240)
    port = server.port
    build_sample(f"sqlite:///{tmp_path / 'source.db'}", big_rows=2_000)
    config = _config(tmp_path)
    env = {
        **server.env(),
        "ETLCTL_CONFIG": str(config),
        "ETLCTL_STATE_DIR": str(tmp_path / "state"),
        "PREFECT_WORKER_QUERY_SECONDS": "2",
    }
    workers = orchestrator = None
    try:
        for command in ("setup", "deploy"):
            proc = subprocess.run([ETLCTL, command], env=env, capture_output=True, text=True, check=False)
            assert proc.returncode == 0, proc.stdout + proc.stderr
        pool = "etl-tables"
        workers = psutil.Popen(
            [ETLCTL, "workers", "start", "-n", str(len(WORKERS)), "--prefix", "srv"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / "workers.log").open("wb"),
            start_new_session=True,
        )
        until(lambda: _online(server, pool) >= set(WORKERS), 120, "two online workers")
        with _held(tmp_path / "target.db"):
            orchestrator = psutil.Popen(
                [ETLCTL, "run"],
                env=env,
                stdout=(tmp_path / "run.out").open("w"),
                stderr=(tmp_path / "run.err").open("w"),
            )
            until(lambda: any(r.state.is_running() for r in _table_runs(server)), 180, "a table loading")
            stop_at = time.monotonic()
            server.stop()
            time.sleep(OUTAGE)  # the outage itself, not a wait for a state
            restart_at = time.monotonic()
            server = start_server(home, port=port, timeout=240)
            up_at, up_wall = time.monotonic(), time.time()
            back_at = until(
                lambda: _online(server, pool, since=up_wall) >= set(WORKERS) and time.monotonic(),
                120,
                "both workers heartbeating to the restarted server",
            )
            assert orchestrator.poll() is None, (tmp_path / "run.err").read_text()[-3000:]
            released_at = time.monotonic()
        code = orchestrator.wait(timeout=600)
        end_at = time.monotonic()
        err = (tmp_path / "run.err").read_text()
        assert code == 0, (tmp_path / "run.out").read_text() + err[-3000:]

        runs = _table_runs(server)
        assert Counter(r.state.name for r in runs)["Completed"] == len(TABLES), Counter(
            r.state.name for r in runs
        )
        target = create_engine(f"sqlite:///{tmp_path / 'target.db'}")
        try:
            with target.connect() as conn:
                history = Counter(
                    conn.execute(
                        text("SELECT table_name FROM _etlctl_runs WHERE outcome = 'success'")
                    ).scalars()
                )
                outcomes = Counter(conn.execute(text("SELECT outcome FROM _etlctl_runs")).scalars())
        finally:
            target.dispose()
        assert history == Counter(TABLES), history  # each table loaded exactly once
        assert outcomes == Counter({"success": len(TABLES)}), outcomes
        assert every_table_differences(config) == []
        with _api(server)() as client:  # the lock's lease outlived the restart and was released
            assert client.read_global_concurrency_limit_by_name(LOCK_NAME).active_slots == 0
        print(
            f"\nserver down {restart_at - stop_at:.1f} s, restarted in {up_at - restart_at:.1f} s; "
            f"workers heartbeating again {back_at - up_at:.1f} s after it was back; the batch ended "
            f"{end_at - released_at:.1f} s after the tables were let go; load {os.getloadavg()[0]:.1f}"
        )
    finally:
        if orchestrator is not None and orchestrator.poll() is None:
            orchestrator.kill()
        if workers is not None:
            _stop_family(workers)
        server.stop()
