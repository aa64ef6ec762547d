"""Transient API errors under load: a proxy answers 503 to a share of every request the workers,
their forked table runs and the orchestrator send, as a busy SQLite-backed server does. Every table
must complete, none crash, and every target table must equal its source."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections import Counter

import psutil
import pytest
from sqlalchemy import create_engine, text

from flows.demo.sample import build_sample, write_sample_config
from flows.etl.fingerprint import fingerprint
from flows.fleet.processes import free_port
from flows.fleet.server import start_server
from flows.names import TABLE_FLOW
from tests.polling import until
from tests.prefect.conftest import ETLCTL

pytestmark = pytest.mark.prefect
RUN_PATH = re.compile(r"/api/flow_runs/[0-9a-f-]{36}/")
SHARE = 0.1  # of requests refused; each Prefect request is retried 5 times, so 1e-5 fail for good
# Six tables on three workers, the big one and incremental ones among them: every kind of request
# (claim, start, state reports, progress, the orchestrator's polls, the cleanups) still meets the
# refusals; the other 17 sample tables only repeated the same requests.
TABLES = ("measurements", "customers", "orders", "order details", "products", "categories")


def _flow_runs(api_url: str) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        return client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[TABLE_FLOW])), limit=200
        )


def test_every_table_completes_through_a_flaky_api(tmp_path):
    server = start_server(tmp_path / "prefect", timeout=240)
    port = free_port()
    upstream = server.api_url.removesuffix("/api")
    refusals = tmp_path / "proxy.out"
    proxy = subprocess.Popen(
        [sys.executable, "-m", "tests.flaky_proxy", upstream, str(port), str(SHARE)],
        stdout=refusals.open("w"),
        stderr=(tmp_path / "proxy.err").open("w"),
    )
    workers = None
    try:
        build_sample(f"sqlite:///{tmp_path / 'source.db'}", big_rows=20_000)
        config = write_sample_config(
            tmp_path / "etlctl.toml",
            f"sqlite:///{tmp_path / 'source.db'}",
            f"sqlite:///{tmp_path / 'target.db'}",
        )
        env = {
            **server.env(),
            "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
            "ETLCTL_CONFIG": str(config),
            "ETLCTL_STATE_DIR": str(tmp_path / "state"),
        }

        def etlctl(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([ETLCTL, *args], env=env, capture_output=True, text=True, check=False)

        until(lambda: etlctl("setup").returncode == 0, 120, "etlctl setup through the proxy", interval=2)
        assert etlctl("deploy").returncode == 0
        workers = psutil.Popen(
            [ETLCTL, "workers", "start", "-n", "3", "--prefix", "flaky"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / "workers.log").open("wb"),
            start_new_session=True,
        )
        run = etlctl("run", *TABLES)
        assert run.returncode == 0, run.stdout + run.stderr[-3000:]
        runs = _flow_runs(server.api_url)
        assert sorted(r.name for r in runs) == sorted(TABLES)
        assert Counter(r.state.name for r in runs) == Counter({"Completed": len(runs)})
        refused = [line.split()[2] for line in refusals.read_text().splitlines()]
        on_runs = [path for path in refused if RUN_PATH.match(path)]
        assert on_runs, refused  # table runs' own requests (state reports, labels) were refused too
        source, target = (
            create_engine(f"sqlite:///{tmp_path / 'source.db'}"),
            create_engine(f"sqlite:///{tmp_path / 'target.db'}"),
        )
        with target.connect() as conn:
            tables = [name for (name,) in conn.execute(text("SELECT table_name FROM _etlctl_state"))]
        assert sorted(tables) == sorted(TABLES)
        assert [t for t in tables if fingerprint(source, t) != fingerprint(target, t)] == []
    finally:
        if workers is not None and workers.is_running():
            family = [workers, *workers.children(recursive=True)]
            workers.send_signal(signal.SIGINT)
            _, alive = psutil.wait_procs(family, timeout=60)
            for proc in alive:
                os.killpg(os.getpgid(proc.pid), signal.SIGKILL)
        proxy.terminate()
        proxy.wait(timeout=20)
        server.stop()
