"""The production shape on one machine: a Prefect server on PostgreSQL, a PostgreSQL source and
target, three workers, and `etlctl run` over every table of the sample."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from flows.config import load_config
from flows.demo.sample import build_sample, write_sample_config
from flows.etl.engines import make_engine
from flows.etl.fingerprint import fingerprint
from flows.fleet.server import start_server
from tests.pg.conftest import config_url

pytestmark = pytest.mark.prefect

ETLCTL = str(Path(sys.executable).with_name("etlctl"))


def test_prefect_on_postgres_moves_every_table_postgres_to_postgres(pg_cluster, tmp_path):
    tag = secrets.token_hex(4)
    prefect_db = pg_cluster.create_database(f"prefect_{tag}")
    source = pg_cluster.create_database(f"src_{tag}")
    pg_cluster.create_database(f"tgt_{tag}")
    tables = build_sample(source, big_rows=20_000)
    path = write_sample_config(
        tmp_path / "etlctl.toml", config_url(pg_cluster, f"src_{tag}"), config_url(pg_cluster, f"tgt_{tag}")
    )
    server = start_server(tmp_path / "prefect", database_url=prefect_db.set(drivername="postgresql+asyncpg"))
    workers = None
    try:
        assert pg_cluster.password not in " ".join(psutil.Process(server.pid).cmdline())
        env = {
            **server.env(),
            "ETLCTL_CONFIG": str(path),
            "ETLCTL_STATE_DIR": str(tmp_path / "state"),
            "ETLCTL_TEST_PG_PASSWORD": os.environ["ETLCTL_TEST_PG_PASSWORD"],
        }
        for step in (["setup"], ["deploy"]):
            done = subprocess.run([ETLCTL, *step], env=env, capture_output=True, text=True, check=False)
            assert done.returncode == 0, done.stderr
        workers = psutil.Popen(
            [ETLCTL, "workers", "start", "-n", "3", "--prefix", "pgfleet"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        run = subprocess.run(
            [ETLCTL, "run"], env=env, capture_output=True, text=True, check=False, timeout=900
        )
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        assert f"{len(tables)} of {len(tables)} tables succeeded" in run.stdout
        assert pg_cluster.password not in run.stdout + run.stderr
        config = load_config(path)
        src, tgt = make_engine(config.source_url, "source"), make_engine(config.target_url, "target")
        assert [t for t in tables if fingerprint(src, t) != fingerprint(tgt, t)] == []
    finally:
        if workers is not None:
            workers.send_signal(signal.SIGINT)
            workers.wait(timeout=60)
        server.stop()
