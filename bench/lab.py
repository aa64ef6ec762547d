"""What the launch benchmarks share: a throwaway Prefect server, a source of N tables, worker pools of
the `etlctl` type and of Prefect's stock `process` type, and the figures read from Prefect's own
run timestamps."""

from __future__ import annotations

import itertools
import os
import secrets
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from flows.fleet.processes import free_port, prefect_executable
from flows.fleet.server import ServerHandle, signal_groups, start_server, wait_gone
from lab.postgres import start_cluster

QUERY_SECONDS = "2"  # what `etlctl workers start`, supervisord and systemd give every worker
TABLE_FLOW = "process-table-etl"
ETLCTL = str(Path(sys.executable).with_name("etlctl"))


@dataclass
class Lab:
    work: Path
    server: ServerHandle

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **self.server.env(),
            "PREFECT_WORKER_QUERY_SECONDS": QUERY_SECONDS,
            "PREFECT_WORKER_HEARTBEAT_SECONDS": "10",
            **extra,
        }


@contextmanager
def lab(server_db: str = "sqlite") -> Iterator[Lab]:
    """A Prefect server of its own, on SQLite or on a throwaway PostgreSQL cluster (`server_db`
    "postgresql", as a fleet runs it); this process becomes its client."""
    with tempfile.TemporaryDirectory(prefix="etlctl-bench-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        database = None
        if server_db == "postgresql":
            os.chmod(work, 0o755)  # the cluster runs as the postgres user
            cluster = start_cluster(work / "pg", free_port(), secrets.token_hex(8))
            stack.callback(cluster.stop)
            cluster.create_database("prefect")
            database = cluster.url("prefect", "asyncpg")
        server = start_server(work / "prefect", database_url=database, timeout=300)
        os.environ.update({k: v for k, v in server.env().items() if k.startswith("PREFECT_")})
        from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

        try:
            with temporary_settings(
                {PREFECT_API_URL: server.api_url, PREFECT_HOME: server.env()["PREFECT_HOME"]}
            ):
                yield Lab(work, server)
        finally:
            server.stop()


def build_source(path: Path, tables: int, rows: int, prefix: str = "t") -> list[str]:
    """`tables` tables of `rows` rows each, made by SQLite itself."""
    names = [f"{prefix}{i:04d}" for i in range(tables)]
    with sqlite3.connect(path) as conn:
        for name in names:
            conn.execute(
                f"CREATE TABLE {name} (id INTEGER PRIMARY KEY, label TEXT NOT NULL,"
                " amount REAL, taken_at DATETIME)"
            )
            conn.execute(
                f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
                f" INSERT INTO {name} SELECT i, printf('row %08d', i), i * 0.25,"
                f" datetime('2024-01-01', printf('+%d seconds', i)) FROM n",
                (rows,),
            )
    return names


def write_config(path: Path, source: Path, target: Path, names: list[str]) -> Path:
    listed = ", ".join(f'"{n}"' for n in names)
    path.write_text(
        f'[source]\nurl = "sqlite:///{source}"\n[target]\nurl = "sqlite:///{target}"\n'
        f"[tables]\nnames = [{listed}]\n[tables.defaults]\nchunk_size = 5000\n"
    )
    return path


def setup_and_deploy(env: dict[str, str]) -> None:
    """`etlctl setup` and `etlctl deploy`, as a user does before the first batch."""
    for command in ("setup", "deploy"):
        subprocess.run([ETLCTL, command], env=env, check=True, capture_output=True)


def make_pool_and_deployment(pool: str, worker_type: str) -> str:
    """A pool of `worker_type` and the table flow deployed on it; returns the deployment's name."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.deployments.runner import EntrypointType
    from prefect.workers.base import BaseWorker

    from flows.table import process_table_etl

    template = BaseWorker.get_worker_class_from_type(worker_type).get_default_base_job_template()
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=pool, type=worker_type, base_job_template=template))
    deployment = process_table_etl.to_deployment(
        name=pool, work_pool_name=pool, entrypoint_type=EntrypointType.MODULE_PATH
    )
    deployment.apply()
    return f"{TABLE_FLOW}/{pool}"


@contextmanager
def workers(
    lab: Lab, pool: str, worker_type: str, count: int, config: Path, prefix: str
) -> Iterator[list[psutil.Popen]]:
    """`count` `prefect worker start --limit 1` processes, online before this yields."""
    procs = []
    logs = lab.work / "logs"
    logs.mkdir(exist_ok=True)
    for i in range(1, count + 1):
        name = f"{prefix}-{i:02d}"
        env = lab.env(ETLCTL_CONFIG=str(config), ETLCTL_WORKER_NAME=name)
        cmd = [prefect_executable(), "worker", "start", "--pool", pool, "--type", worker_type]
        cmd += ["--limit", "1", "--name", name]
        with (logs / f"{name}.log").open("ab") as out:
            procs.append(
                psutil.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            )
    try:
        wait_online(pool, {f"{prefix}-{i:02d}" for i in range(1, count + 1)})
        time.sleep(5 if worker_type == "etlctl" else 0)  # let each fork server finish its imports
        yield procs
    finally:
        family = [p for proc in procs for p in [proc, *_children(proc)]]
        signal_groups(family, 15)
        signal_groups(family, 15)  # Prefect's worker exits on the second signal
        signal_groups(wait_gone(family, 30), 9)


def _children(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return proc.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def wait_online(pool: str, names: set[str], timeout: float = 120) -> None:
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            online = {w.name for w in client.read_workers_for_work_pool(pool) if w.status == "ONLINE"}
            if names <= online:
                return
            time.sleep(0.5)
    raise RuntimeError(f"workers {sorted(names)} not online on {pool} after {timeout:.0f} s")


def create_runs(deployment: str, tables: list[str]) -> list[Any]:
    """One run per table, created as the orchestrator creates them (flows.submit); returns their ids."""
    from flows.submit import Submission, submit_all

    batch = f"bench-{time.time_ns()}"
    ids = submit_all(deployment, [Submission(t, f"{batch}:{t}", {"table": t}) for t in tables])
    return list(ids.values())


def wait_final(ids: list[Any], timeout: float) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            runs = [
                r
                for at in range(0, len(ids), 200)
                for r in client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids[at : at + 200])), limit=200
                )
            ]
            if len(runs) == len(ids) and all(r.state and r.state.is_final() for r in runs):
                return runs
            if time.monotonic() > deadline:
                raise RuntimeError(f"runs not final after {timeout:.0f} s")
            time.sleep(1.0)


def slot_gaps(runs: list[Any]) -> list[float]:
    """Per worker: end of one run to start (Running) of its next, from Prefect's own timestamps.

    Counted from the next run's creation where that came later: until then nothing was queued for
    the slot (the runs of a batch are created over the first seconds, while the fastest tables end).
    """
    by_worker: dict[str, list[Any]] = {}
    for run in runs:
        by_worker.setdefault((run.labels or {}).get("prefect.worker.name", "?"), []).append(run)
    gaps = []
    for mine in by_worker.values():
        mine.sort(key=lambda r: r.start_time)
        gaps += [
            (b.start_time - max(a.end_time, b.created)).total_seconds() for a, b in itertools.pairwise(mine)
        ]
    return gaps


def durations(runs: list[Any]) -> list[float]:
    return [(r.end_time - r.start_time).total_seconds() for r in runs]


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def python() -> str:
    return sys.executable
