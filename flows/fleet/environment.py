"""Where this host keeps its files and which Prefect API it talks to; settled before `import prefect`.

Prefect reads its settings when it is first imported, so the CLI calls `connect()` first and imports
the flows afterwards. The API is $PREFECT_API_URL when set (a fleet), else the server that
`etlctl server start` recorded in the state directory (one machine). Never an ephemeral server: a
run that nobody else can see would defeat the point of the fleet.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx

from flows.errors import PrefectUnavailableError
from flows.fleet.auth import CLIENT_AUTH_ENV, SERVER_AUTH_ENV, auth_headers
from flows.fleet.naming import API_ENV
from flows.fleet.server import read_server_state

STATE_ENV = "ETLCTL_STATE_DIR"


def state_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """--state-dir, else $ETLCTL_STATE_DIR, else $XDG_STATE_HOME/etlctl (~/.local/state/etlctl)."""
    if explicit or os.environ.get(STATE_ENV):
        return Path(explicit or os.environ[STATE_ENV]).expanduser().resolve()
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "etlctl"


def server_home(state: Path) -> Path:
    return state / "prefect"


def connect(state: Path, check: bool = True) -> str:
    """Point this process (and the workers it starts) at the Prefect API; fail with exit 4 if none."""
    running = read_server_state(server_home(state))
    url = os.environ.get(API_ENV) or (running["url"] if running else None)
    if not url:
        raise PrefectUnavailableError(
            f"no Prefect API: set {API_ENV}, or start a local server with `etlctl server start` "
            f"(state directory {state})"
        )
    os.environ[API_ENV] = url
    if os.environ.get(SERVER_AUTH_ENV) and not os.environ.get(CLIENT_AUTH_ENV):
        os.environ[CLIENT_AUTH_ENV] = os.environ[SERVER_AUTH_ENV]  # the server host's own line
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if check:
        _check(url)
    return url


def wait_connected(state: Path, timeout: float, poll: float = 2.0) -> str:
    """`connect`, retried for up to `timeout` seconds: a server that was just started takes 5-30 s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return connect(state)
        except PrefectUnavailableError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(poll)


def _check(url: str) -> None:
    """The API answers, and takes our credentials: /health needs none, /admin/version does."""
    base = url.rstrip("/")
    try:
        httpx.get(base + "/health", timeout=10).raise_for_status()
        answer = httpx.get(base + "/admin/version", headers=auth_headers(os.environ), timeout=10)
    except httpx.HTTPError as exc:
        raise PrefectUnavailableError(f"cannot reach the Prefect API at {url}: {exc}") from None
    if answer.status_code == httpx.codes.UNAUTHORIZED:
        given = "a wrong" if os.environ.get(CLIENT_AUTH_ENV) else "no"
        raise PrefectUnavailableError(
            f"the Prefect API at {url} refused {given} auth string (401): set {CLIENT_AUTH_ENV} "
            "to the server's, in the environment or the env file"
        )
