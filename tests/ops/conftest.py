"""What the ops tests share: one sample source, a way to keep a table run busy for exactly as long as a
test needs (`OpsFleet.hold`), and a work pool of their own with the deployments pointed at it, set up by
the real `etlctl`."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flows.demo.sample import build_sample, write_sample_config
from flows.fleet.server import ServerHandle

ETLCTL = str(Path(sys.executable).with_name("etlctl"))
PREFECT = str(Path(sys.executable).with_name("prefect"))
REPO = Path(__file__).resolve().parents[2]
OPS = REPO / "ops"
LONG_TABLE = "measurements"
# The table is not slow (it loads in about a second): `OpsFleet.hold` keeps its run busy instead.
BIG_ROWS = 100_000
DRAIN_SECONDS = 120
DEPLOYMENT = "process-table-etl/process-table-etl-deployment"


@dataclass(frozen=True)
class Source:
    url: str


@dataclass(frozen=True)
class OpsFleet:
    """A work pool of the test's own, the deployments on it, and an env file for its workers."""

    work: Path
    pool: str
    env: dict[str, str]
    env_file: Path
    target_url: str

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Every table run waits, Running, at its first write to the target until the block ends.

        The test holds the SQLite target's write lock (`BEGIN IMMEDIATE`); a table run waits for it
        for up to flows.etl.engines.SQLITE_BUSY_SECONDS (300 s), then loads as usual. WAL mode first,
        as the workers set it, so that their reads and their own `PRAGMA journal_mode` do not wait.
        """
        conn = sqlite3.connect(self.target_url.removeprefix("sqlite:///"), isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("BEGIN IMMEDIATE")
            yield
        finally:
            conn.close()  # rolls back the empty transaction and lets the waiting runs go

    def run_table(self, table: str) -> str:
        """`prefect deployment run`, as an operator would; returns the flow run's id."""
        proc = subprocess.run(
            [PREFECT, "deployment", "run", DEPLOYMENT, "-p", f"table={table}"],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        found = re.search(r"UUID: ([0-9a-f-]{36})", proc.stdout)
        assert proc.returncode == 0 and found, proc.stdout + proc.stderr
        return found.group(1)


@pytest.fixture(scope="session")
def ops_source(tmp_path_factory: pytest.TempPathFactory) -> Source:
    path = tmp_path_factory.mktemp("ops-source") / "source.db"
    url = f"sqlite:///{path}"
    build_sample(url, big_rows=BIG_ROWS)
    return Source(url)


def make_fleet(prefect_server: ServerHandle, source: Source, work: Path, pool: str) -> OpsFleet:
    """`etlctl setup` and `etlctl deploy` with the table pool `pool`, and the workers' env file.

    The pool is the test's own so that no other test's workers (or their lingering ONLINE records)
    take part; the deployments keep their fixed names and move to this pool.
    """
    target_url = f"sqlite:///{work / 'target.db'}"
    config = write_sample_config(work / "etlctl.toml", source.url, target_url)
    with config.open("a", encoding="utf-8") as out:
        out.write(f'\n[prefect]\ntable_pool = "{pool}"\ncleanup_pool = "{pool}"\n')
        out.write(f'orchestrator_pool = "{pool}-orchestrator"\n')
    env = {**prefect_server.env(), "ETLCTL_CONFIG": str(config), "ETLCTL_STATE_DIR": str(work / "state")}
    for command in ("setup", "deploy"):
        proc = subprocess.run([ETLCTL, command], env=env, capture_output=True, text=True, check=False)
        assert proc.returncode == 0, f"etlctl {command}: {proc.stdout}{proc.stderr}"
    env_file = work / "etlctl.env"
    env_file.write_text(
        "# written by tests/ops, in the shape of ops/etlctl.env.example\n"
        f"PREFECT_API_URL={prefect_server.api_url}\n"
        f"ETLCTL_CONFIG={config}\n"
        f"ETLCTL_DRAIN_SECONDS={DRAIN_SECONDS}\n"
        "PREFECT_WORKER_QUERY_SECONDS=2\n",
        encoding="utf-8",
    )
    return OpsFleet(work, pool, env, env_file, target_url)


def client() -> Any:
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def workers_of(pool: str) -> dict[str, Any]:
    """Worker name -> Prefect's record of it (status, last_heartbeat_time)."""
    with client() as c:
        return {w.name: w for w in c.read_workers_for_work_pool(pool)}


def flow_run(run_id: str) -> Any:
    with client() as c:
        return c.read_flow_run(run_id)
