"""`[workers] memory_max` on real processes: a real `prefect worker start --type etlctl` worker with a
small limit, a table whose load needs more memory than that, and `etlctl run` reporting it.

The wide table holds 2,000 rows of 200 KB text and is read in one chunk: 400 MB of strings (about
440 MiB peak RSS when `etlctl load` moves it alone), over the 300M limit, while the small tables stay
far below it (a forked run starts near 110 MiB). It is a WITHOUT ROWID table, so its rows pass
through Python: SQLite would copy a rowid table from file to file by itself (flows/etl/attach.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
from pathlib import Path

import psutil
import pytest

from flows.fleet.server import ServerHandle
from tests.ops.conftest import ETLCTL, PREFECT, client, workers_of
from tests.polling import until

pytestmark = pytest.mark.prefect

POOL = "limits-tables"
WORKER = "limits-01"
LIMIT = "300M"
WIDE_ROWS = 2000
TEXT_BYTES = 100_000  # hex of this many random bytes: 200 KB of text per row


def _source(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE wide (id INTEGER PRIMARY KEY, body TEXT NOT NULL) WITHOUT ROWID")
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
            " INSERT INTO wide SELECT i, hex(randomblob(?)) FROM n",
            (WIDE_ROWS, TEXT_BYTES),
        )
        for name in ("small_a", "small_b"):
            conn.execute(f"CREATE TABLE {name} (id INTEGER PRIMARY KEY, label TEXT NOT NULL)")
            conn.executemany(f"INSERT INTO {name} VALUES (?, ?)", [(i, f"row {i}") for i in range(500)])
    return f"sqlite:///{path}"


def _config(work: Path, source: str) -> Path:
    path = work / "etlctl.toml"
    path.write_text(
        f'[source]\nurl = "{source}"\n\n[target]\nurl = "sqlite:///{work / "target.db"}"\n\n'
        '[tables]\nnames = ["small_a", "wide", "small_b"]\n\n'
        f"[table.wide]\nchunk_size = {WIDE_ROWS}\n\n"
        f'[prefect]\ntable_pool = "{POOL}"\ncleanup_pool = "{POOL}"\norchestrator_pool = "{POOL}-orch"\n\n'
        f'[workers]\nmemory_max = "{LIMIT}"\nnice = 5\n',
        encoding="utf-8",
    )
    return path


@pytest.fixture
def limited_worker(prefect_server: ServerHandle, tmp_path: Path):
    """The deployments moved to this test's pool, and one worker on it under the memory limit."""
    config = _config(tmp_path, _source(tmp_path / "source.db"))
    env = {**prefect_server.env(), "ETLCTL_CONFIG": str(config), "ETLCTL_STATE_DIR": str(tmp_path / "state")}
    for command in ("setup", "deploy"):
        proc = subprocess.run([ETLCTL, command], env=env, capture_output=True, text=True, check=False)
        assert proc.returncode == 0, f"etlctl {command}: {proc.stdout}{proc.stderr}"
    log = (tmp_path / "worker.log").open("wb")
    worker = psutil.Popen(
        [PREFECT, "worker", "start", "--pool", POOL, "--type", "etlctl", "--limit", "1", "--name", WORKER],
        env={**env, "PREFECT_WORKER_QUERY_SECONDS": "1"},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        until(
            lambda: workers_of(POOL).get(WORKER, None) and workers_of(POOL)[WORKER].status == "ONLINE",
            120,
            "the limited worker online",
        )
        yield env, tmp_path / "worker.log", worker
    finally:
        family = [worker, *worker.children(recursive=True)]
        worker.send_signal(signal.SIGTERM)
        _, alive = psutil.wait_procs(family, timeout=60)
        for proc in alive:
            os.killpg(os.getpgid(proc.pid), signal.SIGKILL)


def _forked(worker: psutil.Process) -> dict[str, set[int]]:
    """Nice values of the worker's fork server and of the table runs forked from it (which lead
    sessions of their own)."""
    found: dict[str, set[int]] = {"server": set(), "runs": set()}
    for proc in worker.children(recursive=True):
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if "flows.fleet.forkserver" not in proc.cmdline():
                continue
            if proc.ppid() == worker.pid:  # the fork server, started by the worker
                found["server"].add(proc.nice())
            elif os.getsid(proc.pid) == proc.pid:  # a run, once it leads its session (nice is set before)
                found["runs"].add(proc.nice())
    return found


def test_a_table_over_memory_max_ends_failed_naming_the_limit_and_the_others_load(limited_worker) -> None:
    env, worker_log, worker = limited_worker
    batch = subprocess.Popen(
        [ETLCTL, "run"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    nices = until(lambda: (found := _forked(worker))["runs"] and found, 120, "a table run forked")
    stdout, stderr = batch.communicate(timeout=600)
    assert nices == {"server": {0}, "runs": {5}}, "[workers] nice applies to each run, not the fork server"
    out = stdout + stderr
    assert batch.returncode == 1, out
    assert "2 of 3 tables succeeded; failed: wide" in out, out
    wide = next(line for line in stdout.splitlines() if line.startswith("wide "))
    assert "failed" in wide and f"memory_max = {LIMIT}" in wide and "MiB" in wide, wide
    from prefect.client.schemas.filters import WorkPoolFilter, WorkPoolFilterName

    with client() as c:
        pool_runs = c.read_flow_runs(work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[POOL])))
    runs = [r for r in pool_runs if (r.parameters or {}).get("table") == "wide"]
    assert len(runs) == 1, "a run stopped at its memory limit must not be resubmitted"
    state = runs[0].state
    assert state.is_failed() and not state.is_crashed(), state
    assert "table 'wide' stopped" in state.message and f"memory_max = {LIMIT}" in state.message, state.message
    assert "over [workers] memory_max" in worker_log.read_text(encoding="utf-8", errors="replace")
