"""Fixtures for every test package: one real Prefect server, started on first use, for the session."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from flows.fleet.server import ServerHandle, start_server

_CLIENT_VARS = ("PREFECT_API_URL", "PREFECT_HOME")


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    """A server on a free port with its own PREFECT_HOME; this process and its children use it.

    os.environ serves subprocesses; Prefect read its settings when it was imported, so this
    process also gets them through `temporary_settings`.
    """
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

    # a fresh database takes ~15 s on a quiet 2-core host; over 60 s has been seen on a loaded one
    handle = start_server(tmp_path_factory.mktemp("prefect-server"), timeout=240)
    client_env = handle.env()
    saved = {name: os.environ.get(name) for name in _CLIENT_VARS}
    os.environ.update({name: client_env[name] for name in _CLIENT_VARS})
    try:
        with temporary_settings({PREFECT_API_URL: handle.api_url, PREFECT_HOME: client_env["PREFECT_HOME"]}):
            yield handle
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        handle.stop()


@pytest.fixture
def prefect_env(prefect_server: ServerHandle) -> dict[str, str]:
    """A complete environment for a subprocess that talks to the session's server."""
    return prefect_server.env()
