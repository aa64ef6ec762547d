"""A real `prefect server start`: healthy, findable through its state file, and gone after a stop."""

from __future__ import annotations

import httpx
import psutil
import pytest

from flows.errors import EtlError, PrefectUnavailableError
from flows.fleet.processes import is_alive
from flows.fleet.server import (
    STATE_FILE,
    ServerHandle,
    read_server_state,
    start_server,
    stop_server,
)

pytestmark = pytest.mark.prefect


def test_server_is_healthy_findable_and_stops_without_leftovers(tmp_path):
    home = tmp_path / "home"
    database = tmp_path / "elsewhere.db"
    handle = start_server(home, database_url=f"sqlite+aiosqlite:///{database}")
    try:
        assert httpx.get(f"{handle.api_url}/health", trust_env=False).json() is True
        state = read_server_state(home)
        assert state is not None
        assert (state["pid"], state["url"], state["port"]) == (
            handle.pid,
            handle.api_url,
            handle.port,
        )
        server = psutil.Process(handle.pid)
        assert str(database) not in " ".join(server.cmdline())
        assert server.environ()["PREFECT_SERVER_DATABASE_CONNECTION_URL"].endswith(str(database))
        assert database.exists()
        env = handle.env()
        assert env["PREFECT_API_URL"] == handle.api_url
        assert env["PREFECT_HOME"] != str(home)
        with pytest.raises(EtlError, match="already running"):
            start_server(home)
        procs = [server, *server.children(recursive=True)]

        assert stop_server(home) is True  # as `etlctl server stop`, knowing only the home

        assert not [p.pid for p in procs if is_alive(p)]
        assert read_server_state(home) is None
        assert not (home / STATE_FILE).exists()
        assert stop_server(home) is False
    finally:
        handle.stop()
    handle.stop()


def test_a_server_that_cannot_start_reports_its_log(tmp_path, prefect_server: ServerHandle):
    with pytest.raises(PrefectUnavailableError, match="exited with code") as failure:
        start_server(tmp_path / "home", port=prefect_server.port)
    assert str(prefect_server.port) in str(failure.value)
    assert read_server_state(tmp_path / "home") is None
