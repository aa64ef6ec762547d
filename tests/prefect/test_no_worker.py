"""`etlctl run` never waits blind: a pool with no worker online is named within seconds, with the
command that starts one, and the run gives up after the start timeout with exit 69 (issue 11).

These tests need pools that no worker serves, so they use a server of their own: the session's
server has the shared fleet's workers on the default pools.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from flows.demo.sample import build_sample, write_sample_config
from flows.fleet.server import start_server
from tests.polling import until
from tests.prefect.conftest import ETLCTL

pytestmark = pytest.mark.prefect

CLEANUP_POOL = "watch-cleanups"


@pytest.fixture(scope="module")
def lonely(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A server, the deployments and a config; no worker anywhere."""
    work = tmp_path_factory.mktemp("lonely")
    build_sample(f"sqlite:///{work / 'source.db'}", big_rows=100)
    path = write_sample_config(
        work / "etlctl.toml", f"sqlite:///{work / 'source.db'}", f"sqlite:///{work / 'target.db'}"
    )
    with path.open("a", encoding="utf-8") as toml:
        toml.write(f'\n[prefect]\ncleanup_pool = "{CLEANUP_POOL}"\nstart_timeout = 8\n')
    server = start_server(work / "prefect", timeout=240)
    env = {
        **os.environ,
        **server.env(),
        "ETLCTL_CONFIG": str(path),
        "ETLCTL_STATE_DIR": str(work / "state"),
        "WORK": str(work),
    }
    from prefect.settings import PREFECT_API_URL, temporary_settings

    try:
        for command in ("setup", "deploy"):
            done = subprocess.run([ETLCTL, command], env=env, capture_output=True, text=True, check=False)
            assert done.returncode == 0, done.stdout + done.stderr
        with temporary_settings({PREFECT_API_URL: server.api_url}):
            yield env
    finally:
        server.stop()


def _timed_run(env: dict[str, str], *args: str) -> tuple[int, str, dict[str, float]]:
    """Run `etlctl run ARGS`; its exit code, all output, and when (s after start) lines first appeared."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [ETLCTL, "run", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    seen: dict[str, float] = {}
    lines: list[str] = []

    def read() -> None:
        for line in proc.stdout:
            lines.append(line)
            for marker in ("no worker is online", "etlctl: error:"):
                if marker in line:
                    seen.setdefault(marker, time.monotonic() - started)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        proc.wait(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
        reader.join()
    return proc.returncode, "".join(lines), seen


def test_with_no_worker_on_the_table_pool_run_says_so_at_once_and_gives_up_with_69(lonely):
    code, output, seen = _timed_run(lonely, "--start-timeout", "6", "categories")
    assert code == 69, output
    assert "no worker is online on pool 'etl-tables'" in output
    assert "etlctl workers start --pool etl-tables" in output
    assert seen["no worker is online"] < 30, seen  # the process's own start-up included
    assert seen["etlctl: error:"] - seen["no worker is online"] < 6 + 10, seen
    error = next(line for line in output.splitlines() if "etlctl: error:" in line)
    assert "no worker came online on pool 'etl-tables' in 6 s" in error and "categories" in error
    assert _state_of("categories") == "Cancelled"  # a worker started later will not load it unwatched


def test_with_no_worker_on_the_cleanup_pool_the_tables_load_then_run_gives_up_by_the_config(lonely):
    work = Path(lonely["WORK"])
    workers = psutil.Popen(
        [ETLCTL, "workers", "start", "-n", "1", "--prefix", "lonely"],
        env=lonely,
        stdout=subprocess.DEVNULL,
        stderr=(work / "workers.log").open("wb"),
        start_new_session=True,
    )
    try:
        until(lambda: _online("etl-tables"), 120, "a worker online on the table pool")
        code, output, _ = _timed_run(lonely, "categories")
    finally:
        family = [workers, *workers.children(recursive=True)]
        workers.send_signal(signal.SIGINT)
        _, alive = psutil.wait_procs(family, timeout=60)
        for proc in alive:
            proc.kill()
    assert code == 69, output
    assert _state_of("categories") == "Completed"
    assert f"no worker is online on pool {CLEANUP_POOL!r}" in output
    error = next(line for line in output.splitlines() if "etlctl: error:" in line)
    assert "in 8 s" in error and "cleanup-flow-1" in error and "cleanup-flow-2" in error


def _client():
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def _online(pool: str) -> bool:
    with _client() as client:
        return any(w.status == "ONLINE" for w in client.read_workers_for_work_pool(pool))


def _state_of(name: str) -> str:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    with _client() as client:
        (run,) = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])),
            sort=FlowRunSort.EXPECTED_START_TIME_DESC,
            limit=1,
        )
    return run.state.name
