"""The warm interpreter behind the `etlctl` worker type: one forked process per flow run.

    python -m flows.fleet.forkserver SOCKET    # started by flows.fleet.launcher, one per worker

A fresh `python -m prefect.engine` spends 2-5 s (10-20 s on a loaded host) importing Prefect,
SQLAlchemy and the flows before a table's first row moves. This process imports them once, while
it has one thread and no event loop, and then forks a child per flow run: the child starts in a
few milliseconds with everything loaded, yet is still a process of its own (own session and
process group, own exit code), so a crash or kill -9 in one table touches no other table.

Protocol, one Unix-socket connection per flow run: the worker sends one JSON line
{"flow_run_id", "env", "cwd", "quiet", "nice"?, "flow_run"?}; the server answers {"pid": N} once
forked, and {"status": code} when the child has exited (negative: killed by that signal, as
subprocess says). "flow_run" is the run as the worker read it when it claimed it (JSON): the child
starts from it instead of reading the run again, and Prefect's engine reads it afresh anyway right
after the run enters Running.

Code changes: before each fork the server compares the modification times of every module it has
loaded with those at start. If any changed (a `pip install` of a new etlctl, an edited file in an
editable install), it answers {"stale": true}, accepts no more runs, exits once its children have,
and the worker starts a new server: the run starts from the new code. Configuration is no module:
the flows read it at every run.

Stopping: EOF on stdin (the worker has exited, even by kill -9) or SIGTERM make the server accept
nothing more and exit once its children have exited; it never kills them. SIGINT (a Ctrl+C in the
worker's terminal) is ignored: the worker decides what happens to its runs.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import selectors
import signal
import socket
import ssl
import sys
import threading
import traceback
from collections.abc import Mapping
from typing import Any

PRELOAD = (
    "prefect",
    "prefect.engine",
    "prefect.flow_engine",
    "prefect.flows",
    "prefect.client.orchestration",
    "prefect.deployments.steps.core",
    "sqlalchemy",
    "flows.table",
    "flows.cleanup",
)
REQUEST_TIMEOUT = 10.0
TEARDOWN_SECONDS = 60  # a run's process after its final state: flushing logs and events

Stamp = dict[str, tuple[int, int]]


def code_stamp() -> Stamp:
    """(mtime, size) of the file of every loaded module: what a code change would alter."""
    stamp = {}
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if not path:
            continue
        try:
            info = os.stat(path)
        except OSError:
            stamp[path] = (-1, -1)
            continue
        stamp[path] = (info.st_mtime_ns, info.st_size)
    return stamp


def is_stale(stamp: Stamp) -> bool:
    for path, (mtime, size) in stamp.items():
        try:
            info = os.stat(path)
        except OSError:
            if mtime != -1:
                return True
            continue
        if (info.st_mtime_ns, info.st_size) != (mtime, size):
            return True
    return False


def _send(conn: socket.socket, message: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        conn.sendall(json.dumps(message).encode() + b"\n")


def _read_request(conn: socket.socket) -> dict[str, Any] | None:
    """One JSON line; None for a connection closed at once (the worker's readiness probe)."""
    conn.settimeout(REQUEST_TIMEOUT)
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            if data:
                raise ConnectionError("the worker closed the connection before its request ended")
            return None
        data += chunk
    conn.settimeout(None)
    return json.loads(data)


def _exit_code(status: int) -> int:
    return os.waitstatus_to_exitcode(status)


class _Server:
    def __init__(self, path: str) -> None:
        self.path = path
        self.stamp = code_stamp()
        self.children: dict[int, socket.socket] = {}
        self.accepting = True
        self.selector = selectors.DefaultSelector()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(64)
        self.selector.register(self.listener, selectors.EVENT_READ)
        self.selector.register(sys.stdin.fileno(), selectors.EVENT_READ)
        self.selector.register(self.wake_r, selectors.EVENT_READ)

    def _on_term(self, *_: object) -> None:
        self.accepting = False

    def serve(self) -> dict[str, Any] | None:
        """Run until told to stop and every child has exited (returns None), or, in a forked
        child, return that child's request."""
        while self.accepting or self.children:
            if not self.accepting:
                self._stop_listening()
            for key, _ in self.selector.select(timeout=1.0):
                if key.fileobj is self.listener:
                    request = self._accept()
                    if request is not None:
                        return request
                elif key.fileobj == sys.stdin.fileno():
                    if not os.read(sys.stdin.fileno(), 4096):
                        self.selector.unregister(sys.stdin.fileno())
                        self.accepting = False
                else:
                    with contextlib.suppress(BlockingIOError):
                        while os.read(self.wake_r, 4096):
                            pass
            self._reap()
        self._stop_listening()
        return None

    def _accept(self) -> dict[str, Any] | None:
        conn, _ = self.listener.accept()
        try:
            request = _read_request(conn)
        except (OSError, ValueError) as exc:
            print(f"etlctl fork server: bad request: {exc}", file=sys.stderr, flush=True)
            conn.close()
            return None
        if request is None:
            conn.close()
            return None
        if is_stale(self.stamp):
            _send(conn, {"stale": True})
            conn.close()
            self.accepting = False
            return None
        pid = os.fork()
        if pid == 0:
            self._become_child(conn, request.get("nice"))
            return request
        self.children[pid] = conn
        _send(conn, {"pid": pid})
        return None

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.children.pop(pid, None)
            if conn is not None:
                _send(conn, {"status": _exit_code(status)})
                conn.close()

    def _stop_listening(self) -> None:
        if self.listener.fileno() == -1:
            return
        self.selector.unregister(self.listener)
        self.listener.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)

    def _become_child(self, conn: socket.socket, nice: int | None) -> None:
        """Shed everything of the server: its signals, sockets and stdin; take the run's nice value
        ([workers] nice; before any thread starts: nice is per thread), then lead a new session, so
        that no process leading a run's session is ever seen at the server's priority."""
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGCHLD, signal.SIGTERM):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        self.selector.close()
        for sock in [self.listener, conn, *self.children.values()]:
            sock.close()
        os.close(self.wake_r)
        os.close(self.wake_w)
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.close(devnull)
        if nice is not None:
            try:
                os.setpriority(os.PRIO_PROCESS, 0, nice)
            except OSError as exc:
                print(f"etlctl: [workers] nice = {nice} not applied: {exc}", file=sys.stderr)
        os.setsid()


def run_flow_run(request: dict[str, Any]) -> int:
    """In the forked child: become the run's environment, then do what `python -m prefect.engine` does."""
    env = request["env"]
    same_settings = _settings_env(env) == _settings_env(os.environ)
    os.environ.clear()
    os.environ.update(env)
    for entry in reversed([p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    os.chdir(request["cwd"])
    if request.get("quiet"):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        os.close(devnull)
    if not same_settings:  # Prefect read its settings from the server's env at import: read them again
        import prefect.context
        from prefect.logging.configuration import setup_logging

        prefect.context.refresh_global_settings_context()
        setup_logging()
    return _engine(request["flow_run_id"], request.get("flow_run"))


def _settings_env(env: Mapping[str, str]) -> dict[str, str]:
    """The variables Prefect builds its settings from (PREFECT__* are per-run values, not settings)."""
    return {k: v for k, v in env.items() if k.startswith("PREFECT_") and not k.startswith("PREFECT__")}


def _engine(flow_run_id: str, snapshot: str | None = None) -> int:
    """prefect/engine.py's `__main__` block, Prefect 3.9.1, as a function, sharing one client."""
    from uuid import UUID

    from prefect._internal.control_listener import configure_from_env
    from prefect._internal.metrics import RunMetrics
    from prefect.client.schemas.objects import FlowRun
    from prefect.context import SyncClientContext
    from prefect.engine import _drive_run_flow_result, handle_engine_signals
    from prefect.flow_engine import flow_run_logger, load_flow, load_flow_run, run_flow

    run_id = UUID(flow_run_id)
    configure_from_env()
    # One API client for reading the run and for the engine (Prefect's own block makes two, each
    # loading the CA bundle and opening a connection): the engine reuses a client context it finds.
    # Its TLS context is the one the fork server built before forking (loading the CA bundle costs
    # 20 ms of CPU per client here).
    with SyncClientContext(httpx_settings=_tls_settings()), handle_engine_signals(run_id):
        flow_run = FlowRun.model_validate_json(snapshot) if snapshot else None
        if flow_run is None or flow_run.id != run_id:
            flow_run = load_flow_run(flow_run_id=run_id)
        run_logger = flow_run_logger(flow_run=flow_run)
        try:
            flow = load_flow(flow_run)
        except Exception:
            run_logger.error("Unexpected exception encountered when trying to load flow", exc_info=True)
            raise
        with RunMetrics(flow_run, flow):
            result = run_flow(flow, flow_run=flow_run, error_logger=run_logger)
            _drive_run_flow_result(flow, result)
    return 0


_tls: list[Any] = []


def _tls_settings() -> dict[str, Any]:
    """httpx settings with the TLS context Prefect's client would build for these settings, built
    once per fork server (before forking) and shared by every child; none if the settings differ."""
    from prefect.settings import PREFECT_API_SSL_CERT_FILE, PREFECT_API_TLS_INSECURE_SKIP_VERIFY

    key = (bool(PREFECT_API_TLS_INSECURE_SKIP_VERIFY.value()), PREFECT_API_SSL_CERT_FILE.value())
    if _tls and _tls[0] == key:
        return {"verify": _tls[1]}
    if _tls:
        return {}  # this run's settings differ from the server's: let Prefect build its own
    import certifi

    if key[0]:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context = ssl.create_default_context(cafile=key[1] or certifi.where())
    _tls[:] = [key, context]
    return {"verify": context}


def main(argv: list[str]) -> int:
    for name in PRELOAD:
        importlib.import_module(name)
    _tls_settings()
    from flows.fleet import quick_start

    quick_start.apply()
    if threading.active_count() != 1:  # a fork copies only the forking thread: locks could be held
        print("etlctl fork server: threads started while preloading; refusing to fork", file=sys.stderr)
        return 1
    request = _Server(argv[1]).serve()
    if request is None:
        return 0
    _exit_child(_child_exit_code(request))


def _child_exit_code(request: dict[str, Any]) -> int:
    """The child's exit code as `python -m prefect.engine` would end with it."""
    try:
        return run_flow_run(request)
    except SystemExit as exc:
        code = exc.code
        if code is None or isinstance(code, int):
            return code or 0
        print(code, file=sys.stderr)
        return 1
    except BaseException:
        traceback.print_exc()
        return 1


def _exit_child(code: int) -> None:
    """Run what interpreter exit runs that matters (joining Prefect's log and event senders, atexit
    hooks), then leave without tearing down ~1,300 modules one by one: that teardown cost the
    next table up to 1.5 s on a loaded host.

    The worker frees the run's slot as soon as its final state is reported, before this runs, so a
    hang here must not go unnoticed for ever: SIGALRM ends the process after TEARDOWN_SECONDS."""
    signal.alarm(TEARDOWN_SECONDS)
    threading._shutdown()  # type: ignore[attr-defined]  # what Py_Finalize calls first
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
