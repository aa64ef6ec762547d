"""How the `etlctl` worker type starts a flow run: forked from a warm interpreter, not a cold one.

The worker keeps one fork server (flows.fleet.forkserver) as its child, with Prefect, SQLAlchemy
and the flows imported. `WarmStarter` is a Prefect `ProcessStarter`: Prefect's own executor drives
it exactly as it drives `python -m prefect.engine` (control channel for cancellation, process
group kill, exit code -> Crashed), only the process comes from a fork instead of an exec.

A run whose job sets its own `command` still goes through Prefect's stock process worker.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from prefect._internal.attempt_control import EngineOutcomeReceipt
from prefect.client.schemas.objects import TERMINAL_STATES
from prefect.logging import get_logger
from prefect.runner._process_manager import ProcessHandle, _PosixProcessGroupTerminationScope
from prefect.settings import get_current_settings
from prefect.utilities.processutils import sanitize_subprocess_env

from flows.fleet.memory_watch import fail_run, over_limit, run_label, watch_memory
from flows.limits import WorkerLimits

START_TIMEOUT = 180.0  # importing Prefect on a loaded 2-core host has taken 20 s; leave room
UNKNOWN_EXIT = 1
CLOSE_WAIT = 10.0  # the fork server died before telling how the run ended
CONCLUSION_POLL = 0.02  # a dict lookup: how soon a reported final state frees the slot
FINAL_STATE_TYPES = frozenset(state.value for state in TERMINAL_STATES)
# Prefect's own switch for "worker subprocesses that inherit a known-compatible server configuration"
# (its description): the worker checked the server's version when it started, and each run's
# process would otherwise ask again (GET /admin/version) before its flow could start.
VERSION_CHECK_ENV = "PREFECT_CLIENT_SERVER_VERSION_CHECK_ENABLED"

log = get_logger("etlctl.launcher")


class StaleServer(Exception):
    """The fork server's code changed on disk since it started: start a new one."""


class ForkServer:
    """The worker's warm interpreter, started on demand and replaced when the code changes."""

    def __init__(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="etlctl-fork-"))
        self._process: subprocess.Popen[bytes] | None = None
        self._path: Path | None = None
        self._generation = 0
        self._retired: list[subprocess.Popen[bytes]] = []
        self._lock = anyio.Lock()

    async def start(self) -> Path:
        """The socket of a live server, starting one (and waiting for its imports) if needed."""
        async with self._lock:
            self._retired = [p for p in self._retired if p.poll() is None]
            if self._process is None or self._process.poll() is not None:
                self._process, self._path = await anyio.to_thread.run_sync(self._spawn)
                await self._wait_ready(self._process, self._path)
            assert self._path is not None
            return self._path

    async def retire(self, path: Path) -> None:
        """Stop sending runs to the server at `path`; it exits once its runs have."""
        async with self._lock:
            if self._path == path and self._process is not None:
                self._close_stdin(self._process)
                self._retired.append(self._process)
                self._process, self._path = None, None

    def close(self, wait: float = CLOSE_WAIT) -> None:
        """Tell every server to exit once its runs have (never kills a run), and give the idle
        ones `wait` seconds to be gone, so a stopped worker leaves no process behind."""
        servers = [p for p in [self._process, *self._retired] if p is not None]
        for process in servers:
            self._close_stdin(process)
        deadline = time.monotonic() + wait
        for process in servers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
        self._process = None

    def pid(self) -> int | None:
        return self._process.pid if self._process and self._process.poll() is None else None

    async def fork(
        self,
        flow_run_id: str,
        env: Mapping[str, str],
        cwd: Path,
        quiet: bool,
        nice: int | None = None,
        snapshot: str | None = None,
    ) -> tuple[int, anyio.abc.SocketStream]:
        """Fork a child for the run; returns its pid and the stream its exit status will come on.
        `snapshot`: the run as claimed (JSON), so that the child does not read it again."""
        request: dict[str, Any] = {
            "flow_run_id": flow_run_id,
            "env": dict(env),
            "cwd": str(cwd),
            "quiet": quiet,
        }
        if nice is not None:
            request["nice"] = nice
        if snapshot is not None:
            request["flow_run"] = snapshot
        for _ in range(3):
            path = await self.start()
            stream = await anyio.connect_unix(str(path))
            try:
                await stream.send(json.dumps(request).encode() + b"\n")
                reply = await _read_line(stream)
            except BaseException:
                await stream.aclose()
                raise
            if reply.get("stale"):
                await stream.aclose()
                log.info("flow code changed on disk: starting a new fork server")
                await self.retire(path)
                continue
            return int(reply["pid"]), stream
        raise StaleServer("the flow code keeps changing on disk; could not start the run")

    def _spawn(self) -> tuple[subprocess.Popen[bytes], Path]:
        self._generation += 1
        path = self._dir / f"fork-{self._generation}.sock"
        process = subprocess.Popen(
            [sys.executable, "-m", "flows.fleet.forkserver", str(path)],
            stdin=subprocess.PIPE,
            env=base_environment(),  # what every run gets, so a child rarely re-reads the settings
            close_fds=True,
        )
        log.debug("fork server %d started for %s", process.pid, path)
        return process, path

    @staticmethod
    async def _wait_ready(process: subprocess.Popen[bytes], path: Path) -> None:
        with anyio.fail_after(START_TIMEOUT):
            while True:
                if process.poll() is not None:
                    raise RuntimeError(
                        f"the fork server exited with code {process.returncode} while starting"
                    )
                with contextlib.suppress(OSError):
                    stream = await anyio.connect_unix(str(path))
                    await stream.aclose()  # the server reads an empty request and drops it
                    return
                await anyio.sleep(0.05)

    @staticmethod
    def _close_stdin(process: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(OSError):
            if process.stdin is not None:
                process.stdin.close()


class ForkedProcess:
    """What Prefect's ProcessHandle needs of a process: pid and returncode."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None


class WarmStarter:
    """Prefect `ProcessStarter` contract: signal the handle once started, return once exited."""

    def __init__(
        self,
        server: ForkServer,
        env: Mapping[str, str | None],
        cwd: Path,
        stream_output: bool,
        control_channel: Any = None,
        limits: WorkerLimits | None = None,
    ) -> None:
        self._server = server
        self._limits = limits or WorkerLimits()
        self._env = env
        self._cwd = cwd
        self._stream_output = stream_output
        self._control_channel = control_channel

    async def start(
        self, flow_run: Any, task_status: anyio.abc.TaskStatus[ProcessHandle] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        control_env: dict[str, str] = {}
        registered = False
        if self._control_channel is not None:
            try:
                port, token = self._control_channel.register(flow_run.id)
                control_env = {"PREFECT__CONTROL_PORT": str(port), "PREFECT__CONTROL_TOKEN": token}
                registered = True
            except RuntimeError:
                pass  # no loopback listener: cancellation falls back to kill-only, as in Prefect
        env = engine_environment(self._env, flow_run.id, control_env)
        try:
            pid, stream = await self._server.fork(
                str(flow_run.id),
                env,
                self._cwd,
                not self._stream_output,
                self._limits.nice,
                flow_run.model_dump_json(),
            )
        except BaseException:
            if registered:
                self._control_channel.unregister(flow_run.id)
            raise
        process = ForkedProcess(pid)
        task_status.started(ProcessHandle(process, termination_scope=_PosixProcessGroupTerminationScope()))
        rss = None
        async with stream, anyio.create_task_group() as group:
            if self._limits.memory_max or self._limits.memory_high:

                async def watch() -> None:
                    nonlocal rss
                    rss = await watch_memory(pid, self._limits, run_label(flow_run))

                group.start_soon(watch)
            status = None
            if registered:

                async def concluded() -> None:
                    nonlocal status
                    await _wait_concluded(self._control_channel, flow_run.id)
                    status = 0
                    group.cancel_scope.cancel()

                group.start_soon(concluded)
            try:
                status = await _exit_status(stream, pid, flow_run.id)
            finally:
                group.cancel_scope.cancel()  # the watchers: the run has ended
        if rss is not None and self._limits.memory_max is not None:
            await fail_run(flow_run, over_limit(run_label(flow_run), self._limits.memory_max, rss))
        process.returncode = status if status is not None else UNKNOWN_EXIT


def base_environment(job_env: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """This process's environment with its Prefect settings spelled out, as Prefect's
    EngineCommandStarter builds it for `python -m prefect.engine`."""
    env: dict[str, str | None] = dict(os.environ)
    env.update(job_env or {})
    env.update(settings_environment())
    env.setdefault(VERSION_CHECK_ENV, "false")  # an operator's own setting stands
    return sanitize_subprocess_env(env)


_settings_seen: list[Any] = [None, {}]


def settings_environment() -> dict[str, str]:
    """The current Prefect settings as variables, computed again only when the settings object changes:
    dumping them costs a quarter of a second of a loaded host for every run otherwise."""
    settings = get_current_settings()
    if _settings_seen[0] is not settings:
        _settings_seen[:] = [settings, settings.to_environment_variables(exclude_unset=True)]
    return dict(_settings_seen[1])


def engine_environment(
    job_env: Mapping[str, str | None], flow_run_id: Any, control_env: Mapping[str, str]
) -> dict[str, str]:
    """The environment of one flow run's process."""
    env = base_environment(job_env)
    env.update(
        {
            "PREFECT__FLOW_RUN_ID": str(flow_run_id),
            "PREFECT__ENABLE_CANCELLATION_AND_CRASHED_HOOKS": "false",
            **control_env,
        }
    )
    return env


async def _exit_status(stream: anyio.abc.SocketStream, pid: int, flow_run_id: Any) -> int:
    """The run process's exit status, as the fork server reports it once the child is reaped."""
    try:
        reply = await _read_line(stream)
        return int(reply["status"])
    except (anyio.EndOfStream, anyio.BrokenResourceError, ValueError, KeyError):
        log.error("lost the fork server while flow run %s ran; its exit status is unknown", flow_run_id)
        await _wait_pid_gone(pid)
        return UNKNOWN_EXIT


async def _wait_concluded(control_channel: Any, flow_run_id: Any) -> None:
    """Return once the run's engine has reported a final state over Prefect's control channel.

    That receipt is Prefect's own terminal evidence: its executor then treats the attempt as
    handled whatever the exit code. Freeing the slot here, not at process exit, saves the child's
    teardown (joining its heartbeat, log and event threads) from the gap before the next table;
    the child is still reaped by the fork server, and leaves within TEARDOWN_SECONDS.
    """
    while True:
        conclusion = control_channel.get_conclusion(flow_run_id)
        if isinstance(conclusion, EngineOutcomeReceipt) and conclusion.state_type in FINAL_STATE_TYPES:
            return
        await anyio.sleep(CONCLUSION_POLL)


async def _read_line(stream: anyio.abc.SocketStream) -> dict[str, Any]:
    data = b""
    while not data.endswith(b"\n"):
        data += await stream.receive()
    return json.loads(data)


async def _wait_pid_gone(pid: int) -> None:
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        await anyio.sleep(0.5)
