"""A PostgreSQL that accepts TCP and never answers, or stops answering mid-table, fails the command
within its configured bound (flows.etl.pg_timeouts) instead of hanging it; the target is unchanged,
and a retry once the database answers again loads the table equal to its source.

The subprocess timeouts below only turn a hang into a failure; they time nothing.
"""

from __future__ import annotations

import secrets
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from flows.config import load_config
from flows.etl.engines import make_engine
from flows.etl.fingerprint import fingerprint
from tests.pg.conftest import PASSWORD_ENV
from tests.pg.stall_proxy import StallingProxy

ETLCTL = str(Path(sys.executable).with_name("etlctl"))
HANG = 120  # far above every bound configured here: reaching it means the command hung


def _etlctl(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ETLCTL, "--config", str(config), *args], capture_output=True, text=True, timeout=HANG, check=False
    )


def _config(path: Path, source: str, target: str, extra: str = "") -> Path:
    path.write_text(
        f'[source]\nurl = "{source}"\n{extra}\n[target]\nurl = "{target}"\n'
        '[tables]\nnames = ["big"]\n[tables.defaults]\nchunk_size = 1000\n',
        encoding="utf-8",
    )
    return path


def _pg(port: int, database: str) -> str:
    return f"postgresql+psycopg://etl:${{{PASSWORD_ENV}}}@127.0.0.1:{port}/{database}"


@pytest.fixture
def silent_listener():
    """A port that accepts connections and never says a word."""
    with socket.create_server(("127.0.0.1", 0), backlog=16) as listener:
        yield listener.getsockname()[1]


@pytest.mark.parametrize("command", [("config", "check"), ("load", "big")])
def test_a_silent_host_fails_fast_with_exit_3(pg_cluster, silent_listener, tmp_path, command):
    config = _config(
        tmp_path / "etlctl.toml",
        _pg(silent_listener, "src"),
        f"sqlite:///{tmp_path / 'target.db'}",
        "connect_timeout = 2",
    )
    result = _etlctl(config, *command)
    assert result.returncode == 3, result.stderr
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1
    assert f"source database postgresql+psycopg://etl:***@127.0.0.1:{silent_listener}/src" in line
    assert "timeout" in line
    assert pg_cluster.password not in result.stderr + result.stdout
    assert (
        not (tmp_path / "target.db").exists()
        or "big" not in inspect(create_engine(f"sqlite:///{tmp_path / 'target.db'}")).get_table_names()
    )


def test_a_database_that_logs_in_and_then_says_nothing_fails_the_check_fast(pg_cluster, tmp_path):
    """`config check` bounds its probe by connect_timeout, not by the long answer_timeout."""
    with StallingProxy(pg_cluster.host, pg_cluster.port, stall_on_query=True) as proxy:
        config = _config(
            tmp_path / "etlctl.toml",
            _pg(proxy.port, "postgres"),
            f"sqlite:///{tmp_path / 'target.db'}",
            "connect_timeout = 2",
        )
        result = _etlctl(config, "config", "check")
        assert proxy.stalled.is_set()
    assert result.returncode == 3, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert (
        f"cannot connect to source database postgresql+psycopg://etl:***@127.0.0.1:{proxy.port}/postgres"
        in (result.stderr)
    )
    assert "did not answer within 2 s" in result.stderr


@pytest.fixture
def big_source(pg_cluster):
    """A source database with one table of ~6 MB, streamed in chunks of 1000 rows."""
    name = f"stall_{secrets.token_hex(4)}"
    engine = create_engine(pg_cluster.create_database(name))
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE big AS SELECT g AS id, md5(g::text) || repeat('x', 60) AS body "
                "FROM generate_series(1, 60000) AS g"
            )
        )
    engine.dispose()
    return name


@pytest.mark.parametrize("side", ["source", "target"])
def test_a_database_that_stops_answering_mid_table_fails_the_run_and_a_retry_loads_it(
    pg_cluster, big_source, tmp_path, side
):
    target_db = f"tgt_{secrets.token_hex(4)}"
    pg_cluster.create_database(target_db)
    with StallingProxy(pg_cluster.host, pg_cluster.port, stall_after=1_500_000) as proxy:
        through = {"source": side == "source", "target": side == "target"}
        source = _pg(proxy.port if through["source"] else pg_cluster.port, big_source)
        target = _pg(proxy.port if through["target"] else pg_cluster.port, target_db)
        bound = "answer_timeout = 5\nconnect_timeout = 3"
        config = tmp_path / "etlctl.toml"
        config.write_text(
            f'[source]\nurl = "{source}"\n{bound if through["source"] else ""}\n'
            f'[target]\nurl = "{target}"\n{bound if through["target"] else ""}\n'
            '[tables]\nnames = ["big"]\n[tables.defaults]\nchunk_size = 1000\n',
            encoding="utf-8",
        )

        failed = _etlctl(config, "load", "big")
        assert proxy.stalled.is_set(), "the proxy never stalled: the table is too small for this test"
        assert failed.returncode == 1, failed.stdout + failed.stderr
        assert "did not answer within 5 s (answer_timeout)" in failed.stdout + failed.stderr
        assert pg_cluster.password not in failed.stdout + failed.stderr
        direct = load_config(
            _config(
                tmp_path / "direct.toml", _pg(pg_cluster.port, big_source), _pg(pg_cluster.port, target_db)
            )
        )
        target_engine = make_engine(direct.target_url, "target")
        assert "big" not in inspect(target_engine).get_table_names()

        proxy.heal()
        retried = _etlctl(config, "load", "big")
        assert retried.returncode == 0, retried.stdout + retried.stderr
        source_engine = make_engine(direct.source_url, "source")
        assert fingerprint(source_engine, "big") == fingerprint(target_engine, "big")
        assert fingerprint(target_engine, "big")[0] == 60_000
