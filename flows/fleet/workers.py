"""The supervisor behind `etlctl workers start`: N named `prefect worker start` processes, kept alive.

The first Ctrl+C (SIGINT, or SIGTERM/SIGHUP) drains: every worker gets SIGTERM, which the `etlctl`
worker type (flows/fleet/drain_worker.py) takes as "claim nothing new, let the running flow runs
finish, exit 0"; the supervisor restarts nothing and returns once every worker has exited. The
workers lead sessions of their own, so the terminal's SIGINT reaches the supervisor alone.

A second signal stops at once, and that is not "send SIGTERM again" because of how Prefect 3.9
workers behave (checked on this machine): their flow-run processes have sessions of their own and
write their logs into a pipe read by the worker. A flow run that gets SIGTERM reports itself
Crashed only while that pipe still has its reader: once the worker is gone the run stays Running
for ever. So `stop` freezes each worker (SIGSTOP: it claims nothing new and keeps its pipes open),
SIGTERMs the process group of each of its descendants, waits for them, then SIGKILLs the workers
and anything still left.

With a log directory, each worker writes into `<name>.log` there (0600, rotated by size: see
flows.fleet.logpipe), and every file a worker or its flow runs create is private (umask 077).

A worker that dies on its own (kill -9, OOM) orphans its flow runs; they run on and report their
end themselves. A drain waits for them too; a stop kills them, and they may then stay Running in
Prefect until a waiting orchestrator marks them Crashed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from flows.errors import ConfigError
from flows.fleet.logpipe import start_logpipe
from flows.fleet.naming import this_host, worker_name
from flows.fleet.private import CHILD_UMASK, private_dir
from flows.fleet.processes import descendants, flow_run_processes, is_alive, signal_groups, wait_gone
from flows.fleet.worker_exec import worker_command, worker_env

MIN_BACKOFF = 1.0
MAX_BACKOFF = 30.0
STABLE_AFTER = 60.0
STOP_TIMEOUT = 15.0

log = logging.getLogger(__name__)


@dataclass
class _Worker:
    name: str
    process: psutil.Popen | None = None
    started: float = 0.0
    restarts: int = 0
    backoff: float = MIN_BACKOFF
    restart_at: float | None = None
    runs: list[psutil.Process] = field(default_factory=list)
    log_reader: subprocess.Popen[bytes] | None = None


class WorkerSupervisor:
    """Keep `count` process workers named `<prefix>-NN` polling `pool`; restart any that dies."""

    def __init__(
        self,
        pool: str,
        count: int,
        limit: int = 1,
        prefix: str | None = None,
        extra_env: Mapping[str, str] | None = None,
        log_dir: Path | None = None,
        report: Callable[[str], None] = log.warning,
    ) -> None:
        if count < 1 or limit < 1:
            raise ConfigError("the number of workers and their --limit must be at least 1")
        self.pool = pool
        self.limit = limit
        self.extra_env = dict(extra_env or {})
        self.log_dir = Path(log_dir) if log_dir else None
        self.report = report
        prefix = prefix or this_host()
        self._workers = [_Worker(worker_name(prefix, i)) for i in range(1, count + 1)]
        self._orphans: list[psutil.Process] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._signals = 0
        self._stop_requested = False
        self._draining = False
        self._stopped = False

    def start(self) -> None:
        """Start every worker that is not running yet."""
        with self._lock:
            for worker in self._workers:
                if worker.process is None and not self._stopped:
                    self._spawn(worker)

    def check(self) -> None:
        """One pass: remember each live worker's flow runs, restart dead workers whose backoff is
        over; while draining, a worker that exits stays stopped."""
        with self._lock:
            if self._stopped:
                return
            now = time.monotonic()
            for worker in self._workers:
                if worker.process is None:
                    continue
                if worker.restart_at is None:
                    if worker.process.poll() is None:
                        worker.runs = descendants(worker.process)
                        continue
                    if self._draining:
                        continue
                    self._note_exit(worker, now)
                if now >= worker.restart_at and not self._draining:
                    worker.restarts += 1
                    self._spawn(worker)
            self._orphans = [p for p in self._orphans if is_alive(p)]

    def run_forever(self, tick: float = 1.0) -> None:
        """Start and supervise. The first SIGINT/SIGTERM/SIGHUP drains and returns once every worker
        has finished; a second one, or `stop()`, stops everything at once."""
        previous = self._trap_signals()
        try:
            self.start()
            while True:
                self._wake.wait(tick)
                self._wake.clear()
                if self._stop_requested or self._signals >= 2:
                    break
                if self._signals == 1 and not self._draining:
                    running = self.drain()
                    self.report(
                        f"draining: {_tables(running)} running; the "
                        "workers claim no new ones and stop when done (Ctrl+C again stops at once)"
                    )
                self.check()
                if self._draining and self.drained():
                    self.report("drained: every worker finished its tables and stopped")
                    break
        finally:
            if not self._stopped and not (self._draining and self.drained()):
                self.report(f"stopping now: {_tables(self.running_tables())} running, interrupted")
            self.stop()
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def drain(self) -> int:
        """Ask every worker to finish its flow runs and claim no new ones (SIGTERM: the etlctl
        worker type drains), restart none from now on; returns how many tables are running."""
        with self._lock:
            self._draining = True
            live = self._live()
            for process in live:
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.send_signal(signal.SIGTERM)
            return self._count_runs(live)

    def drained(self) -> bool:
        """Every worker has exited and no orphaned flow run is left."""
        with self._lock:
            return not self._live() and not [p for p in self._orphans if is_alive(p)]

    def running_tables(self) -> int:
        with self._lock:
            return self._count_runs(self._live())

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop every worker and its flow runs so that none of them is left; safe to repeat."""
        self._stop_requested = True
        self._wake.set()
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            workers = self._live()
            for process in workers:
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.send_signal(signal.SIGSTOP)
            runs = self._orphans + [p for w in workers for p in descendants(w)]
            signal_groups(runs, signal.SIGTERM)
            left = wait_gone(runs, timeout)
            if left:
                log.warning("flow-run processes %s ignored SIGTERM; killing", [p.pid for p in left])
            signal_groups([*workers, *left], signal.SIGKILL)
            for process in workers:
                process.wait()
            wait_gone(left, 5.0)
            # the log readers end once every writer has gone; wait, so nothing outlives a stop
            deadline = time.monotonic() + 5.0
            for reader in [w.log_reader for w in self._workers if w.log_reader is not None]:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    reader.wait(timeout=max(0.0, deadline - time.monotonic()))
            log.info("stopped %d workers and %d flow-run processes", len(workers), len(runs))

    def workers(self) -> list[tuple[str, int | None, int]]:
        """(name, pid or None while waiting to restart, restarts so far) for each worker."""
        with self._lock:
            return [
                (w.name, w.process.pid if w.process and w.process.poll() is None else None, w.restarts)
                for w in self._workers
            ]

    def _spawn(self, worker: _Worker) -> None:
        command = worker_command(worker.name, self.pool, self.limit)
        env = worker_env({**os.environ, "PYTHONUNBUFFERED": "1", **self.extra_env}, worker.name)
        output = None
        if self.log_dir is not None:
            private_dir(self.log_dir)
            output, worker.log_reader = start_logpipe(self.log_dir / f"{worker.name}.log")
        try:
            worker.process = psutil.Popen(
                command,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT if output else None,
                start_new_session=True,
                umask=CHILD_UMASK,
            )
        finally:
            if output is not None:
                os.close(output)
        worker.started = time.monotonic()
        worker.restart_at = None
        worker.runs = []
        log.info("worker %s started (pid %d)", worker.name, worker.process.pid)

    def _live(self) -> list[psutil.Popen]:
        return [w.process for w in self._workers if w.process and w.process.poll() is None]

    def _count_runs(self, live: list[psutil.Popen]) -> int:
        return sum(len(flow_run_processes(p)) for p in live) + sum(map(is_alive, self._orphans))

    def _note_exit(self, worker: _Worker, now: float) -> None:
        if now - worker.started >= STABLE_AFTER:
            worker.backoff = MIN_BACKOFF
        worker.restart_at = now + worker.backoff
        log.warning(
            "worker %s (pid %d) exited with code %s; restarting in %.0f s",
            worker.name,
            worker.process.pid,
            worker.process.returncode,
            worker.backoff,
        )
        worker.backoff = min(worker.backoff * 2, MAX_BACKOFF)
        # Its flow runs carry on without it; remembered so that they do not outlive a stop.
        self._orphans += [p for p in worker.runs if is_alive(p)]
        worker.runs = []

    def _trap_signals(self) -> dict[int, Any]:
        """Count SIGINT/SIGTERM/SIGHUP for the loop to act on; only the main thread may set handlers."""
        if threading.current_thread() is not threading.main_thread():
            return {}

        def on_signal(*_: Any) -> None:
            self._signals += 1
            self._wake.set()

        return {
            signum: signal.signal(signum, on_signal)
            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        }


def _tables(count: int) -> str:
    return f"{count} table" if count == 1 else f"{count} tables"
