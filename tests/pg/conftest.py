"""A real PostgreSQL server for the session: a throwaway cluster in its own folder under /tmp."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.fleet.processes import free_port
from lab.postgres import PgCluster, start_cluster

PASSWORD_ENV = "ETLCTL_TEST_PG_PASSWORD"


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    root = Path(tempfile.mkdtemp(prefix="etlctl-pg-", dir="/tmp"))
    os.chmod(root, 0o755)  # the server runs as the postgres user
    password = "p@ss:" + secrets.token_hex(6)  # characters that break naive URL building
    cluster = start_cluster(root / "cluster", free_port(), password)
    os.environ[PASSWORD_ENV] = password
    try:
        yield cluster
    finally:
        cluster.stop()
        os.environ.pop(PASSWORD_ENV, None)
        shutil.rmtree(root, ignore_errors=True)


def config_url(cluster: PgCluster, database: str) -> str:
    """The URL as a config file holds it: the password stays in the environment."""
    return f"postgresql+psycopg://etl:${{{PASSWORD_ENV}}}@{cluster.host}:{cluster.port}/{database}"
