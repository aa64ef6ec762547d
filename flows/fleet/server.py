"""A local Prefect server for one machine or a test run, which another etlctl process can find and stop.

The server is `prefect server start` (flows.fleet.prefect_server: its SQLite writers queue for the
lock instead of failing) in a session of its own: a Ctrl+C in the caller's terminal
does not reach it, and stopping it signals its whole process group. Its pid and URL are written to
`<home>/server.json` so that `etlctl server stop`, a different process, can find it later. Its home,
database and log are private to their owner (flows.fleet.private), its log rotates by size
(flows.fleet.logpipe), and with an auth string (flows.fleet.auth) every API request needs it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from sqlalchemy.engine import URL

from flows.errors import EtlError, PrefectUnavailableError
from flows.fleet.auth import CLIENT_AUTH_ENV, SERVER_AUTH_ENV
from flows.fleet.logpipe import start_logpipe
from flows.fleet.naming import API_ENV
from flows.fleet.private import CHILD_UMASK, open_private, private_dir, tighten
from flows.fleet.processes import free_port, same_process, signal_groups, tree, wait_gone

STATE_FILE = "server.json"
START_TIMEOUT = 120.0  # a fresh database takes ~15 s idle, over 60 s on a loaded 2-core host
LEASE_STORAGE = "prefect.server.concurrency.lease_storage.filesystem"
SERVER_MODULE = "flows.fleet.prefect_server"  # `prefect server start`, SQLite writers queued
_WILDCARD_TO_LOOPBACK = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}
_POLL = 0.25


@dataclass
class ServerHandle:
    """A running server: where clients reach it, and how to stop it."""

    api_url: str
    pid: int
    home: Path
    port: int
    create_time: float
    auth: str | None = field(default=None, repr=False, compare=False)
    log_pid: int | None = None
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    def env(self) -> dict[str, str]:
        """A complete environment for a client or worker of this server.

        Every PREFECT_* variable of the caller (a profile, an API key, another server's URL) is
        dropped, and PREFECT_HOME is a directory of the clients' own: they never open the server's
        SQLite file nor pick up a user's ~/.prefect profile. With auth on, it carries the auth
        string, as the variable Prefect's clients read (never as an argument).
        """
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env[API_ENV] = self.api_url
        env["PREFECT_HOME"] = str(self.home / "client")
        if self.auth:
            env[CLIENT_AUTH_ENV] = self.auth
        return env

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the server's process group, SIGKILL what outlives `timeout`; safe to repeat."""
        if same_process(self.pid, self.create_time):
            procs = tree(psutil.Process(self.pid))
            signal_groups(procs, signal.SIGTERM)
            left = wait_gone(procs, timeout)
            signal_groups(left, signal.SIGKILL)
            wait_gone(left, 5.0)
        if self._process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=5.0)
        if self.log_pid is not None:  # the log reader ends once the server's last line is written
            with contextlib.suppress(psutil.Error):
                reader = psutil.Process(self.log_pid)
                if "flows.fleet.logpipe" in reader.cmdline():  # not a later process with its pid
                    wait_gone([reader], 5.0)
        _forget(self.home, self.pid)


def start_server(
    home: Path,
    port: int | None = None,
    host: str = "127.0.0.1",
    database_url: str | URL | None = None,
    log_path: Path | None = None,
    ui: bool = False,
    timeout: float = START_TIMEOUT,
    auth: str | None = None,
) -> ServerHandle:
    """Start `prefect server start` and return once /api/health answers.

    `database_url` and `auth` (the basic-auth string every API request must then carry) reach the
    server through its environment, never its command line (which any user can read with ps). With
    the UI on and a wildcard host, the UI is told to call the API by this machine's name, since
    browsers elsewhere cannot use 0.0.0.0.
    """
    home = private_dir(Path(home).resolve())
    tighten(sorted(home.glob("prefect.db*")))
    running = read_server_state(home)
    if running is not None:
        raise EtlError(
            f"a Prefect server for {home} is already running (pid {running['pid']}, "
            f"{running['url']}); stop it with `etlctl server stop`"
        )
    port = port or free_port(_WILDCARD_TO_LOOPBACK.get(host, host))
    log_path = Path(log_path or home / "server.log")
    private_dir(log_path.parent)
    command = [sys.executable, "-m", SERVER_MODULE, "server", "start", "--host", host, "--port", str(port)]
    command.append("--ui" if ui else "--no-ui")
    log, log_reader = start_logpipe(log_path)
    try:
        process = subprocess.Popen(
            command,
            env=_server_env(home, host, port, database_url, ui, auth),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            umask=CHILD_UMASK,
        )
    finally:
        os.close(log)
    handle = ServerHandle(
        api_url=f"http://{_url_host(_WILDCARD_TO_LOOPBACK.get(host, host))}:{port}/api",
        pid=process.pid,
        home=home,
        port=port,
        create_time=psutil.Process(process.pid).create_time(),
        auth=auth,
        log_pid=log_reader.pid,
        _process=process,
    )
    _write_state(handle, host, log_path)
    try:
        _wait_healthy(handle, process, log_path, timeout, log_reader)
    except BaseException:
        handle.stop()
        raise
    return handle


def read_server_state(home: Path) -> dict[str, Any] | None:
    """The state file of the server started for `home`, or None if there is none or it has exited."""
    try:
        state = json.loads((Path(home) / STATE_FILE).read_text(encoding="utf-8"))
        alive = same_process(int(state["pid"]), float(state["create_time"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return state if alive else None


def stop_server(home: Path, timeout: float = 20.0) -> bool:
    """Stop the server recorded for `home` by any process; False if none was running."""
    home = Path(home).resolve()
    state = read_server_state(home)
    if state is None:
        (home / STATE_FILE).unlink(missing_ok=True)
        return False
    ServerHandle(
        api_url=state["url"],
        pid=state["pid"],
        home=home,
        port=state["port"],
        create_time=state["create_time"],
        log_pid=state.get("log_pid"),
    ).stop(timeout)
    return True


def wait_for_exit(handle: ServerHandle) -> None:
    """Stay attached to the server (`--foreground`): SIGINT/SIGTERM stop it, and its own exit is an error."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.wait(1.0):
        if not same_process(handle.pid, handle.create_time):
            _forget(handle.home, handle.pid)
            raise PrefectUnavailableError(f"the Prefect server exited; see {handle.home / 'server.log'}")
    handle.stop()


def _server_env(
    home: Path, host: str, port: int, database_url: str | URL | None, ui: bool, auth: str | None
) -> dict[str, str]:
    # The server is no client of another server, and has no use for a client's API key; its auth
    # is the one it was given, not whatever the caller's environment holds.
    dropped = (API_ENV, "PREFECT_API_KEY", CLIENT_AUTH_ENV, SERVER_AUTH_ENV)
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    if auth:
        env[SERVER_AUTH_ENV] = auth
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE=LEASE_STORAGE,
        # The UI's default API address is built from these settings, not from --host/--port.
        PREFECT_SERVER_API_HOST=host,
        PREFECT_SERVER_API_PORT=str(port),
    )
    if ui and host in _WILDCARD_TO_LOOPBACK and "PREFECT_SERVER_UI_API_URL" not in env:
        env["PREFECT_SERVER_UI_API_URL"] = f"http://{socket.gethostname()}:{port}/api"
    if isinstance(database_url, URL):
        database_url = database_url.render_as_string(hide_password=False)
    if database_url:
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = database_url
    return env


def _wait_healthy(
    handle: ServerHandle,
    process: subprocess.Popen[bytes],
    log_path: Path,
    timeout: float,
    log_reader: subprocess.Popen[bytes],
) -> None:
    url = f"{handle.api_url}/health"
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        while True:
            code = process.poll()
            if code is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    log_reader.wait(timeout=5.0)  # it has the server's last words
                raise PrefectUnavailableError(
                    f"the Prefect server exited with code {code} while starting; "
                    f"end of {log_path}:\n{_tail(log_path)}"
                )
            try:
                if _listens(process.pid, handle.port) and client.get(url).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise PrefectUnavailableError(
                    f"the Prefect server did not answer {url} within {timeout:.0f} s; "
                    f"end of {log_path}:\n{_tail(log_path)}"
                )
            time.sleep(_POLL)


def _listens(pid: int, port: int) -> bool:
    """Whether our process holds the port: another server there would answer the health check too."""
    try:
        connections = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.NoSuchProcess:
        return False
    return any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in connections)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _write_state(handle: ServerHandle, host: str, log_path: Path) -> None:
    state = {
        "pid": handle.pid,
        "create_time": handle.create_time,
        "url": handle.api_url,
        "host": host,
        "port": handle.port,
        "log": str(log_path),
        "log_pid": handle.log_pid,
    }
    path = handle.home / STATE_FILE
    tmp = path.with_suffix(".tmp")
    with open_private(tmp) as file:
        file.write(json.dumps(state, indent=2) + "\n")
    os.replace(tmp, path)


def _forget(home: Path, pid: int) -> None:
    """Remove the state file if it still describes this server, not a newer one."""
    path = home / STATE_FILE
    try:
        if json.loads(path.read_text(encoding="utf-8")).get("pid") == pid:
            path.unlink()
    except (OSError, ValueError):
        pass
