"""The `etlctl` worker type: Prefect's process worker, plus a drain on SIGTERM.

    prefect worker start --pool etl-tables --type etlctl --limit 1 --name host-01

Prefect's own worker swallows the first SIGTERM and keeps claiming runs, and the second one kills
it while its flow runs live on in their own process groups (see docs/operations.md). This worker
is registered through the package's `prefect.collections` entry point, so `prefect worker start`
finds it, and it changes only that: on SIGTERM or SIGINT it stops claiming runs, lets the runs it
has finish, and exits 0. A run still going after $ETLCTL_DRAIN_SECONDS (default 600) is sent
SIGTERM while this worker still reads its output, so Prefect records it Crashed and the orchestrator
resubmits the table. A second signal skips the wait.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import anyio
import psutil
from prefect.workers.process import ProcessWorker

from flows.fleet.machines import is_draining
from flows.fleet.naming import DRAIN_ENV, WORKER_TYPE, host_of_worker
from flows.fleet.processes import flow_run_processes

DEFAULT_DRAIN_SECONDS = 600.0
CRASH_REPORT_SECONDS = 20.0


class DrainingProcessWorker(ProcessWorker):
    type = WORKER_TYPE
    _description = "Prefect's process worker that drains on SIGTERM: finishes its runs, claims no new ones."
    _display_name = "etlctl process (draining)"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._draining = False
        self._host_drained = False
        self._signals = 0

    async def get_and_submit_flow_runs(self) -> list[Any]:
        if self._draining:
            return []
        if await anyio.to_thread.run_sync(self._host_is_draining):
            if not self._host_drained:
                self._logger.info("Host is drained (etlctl machine drain): claiming no new flow runs")
            self._host_drained = True
            return []
        self._host_drained = False
        return await super().get_and_submit_flow_runs()

    async def start(self, *args: Any, **kwargs: Any) -> None:
        async with anyio.create_task_group() as group:
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, self._on_signal)

            async def run_worker() -> None:
                await super(DrainingProcessWorker, self).start(*args, **kwargs)
                group.cancel_scope.cancel()

            group.start_soon(run_worker)
            await self._drained()
            group.cancel_scope.cancel()

    def _host_is_draining(self) -> bool:
        try:
            return is_draining(host_of_worker(self.name))
        except Exception as exc:  # the inventory is advisory: an API hiccup must not stop the worker
            self._logger.warning("Could not read the host's drain flag: %s", exc)
            return False

    def _on_signal(self) -> None:
        self._signals += 1
        if not self._draining:
            self._draining = True
            self._logger.info(
                "Draining: claiming no new flow runs; waiting for %d running", self._in_flight()
            )

    def _in_flight(self) -> int:
        return int(self._limiter.borrowed_tokens) if self._limiter else len(_flow_runs())

    async def _drained(self) -> None:
        """Return once a drain has finished: every run done, or the grace period spent."""
        while not self._draining:
            await anyio.sleep(0.2)
        deadline = anyio.current_time() + float(os.environ.get(DRAIN_ENV, DEFAULT_DRAIN_SECONDS))
        while self._in_flight() and self._signals < 2 and anyio.current_time() < deadline:
            await anyio.sleep(0.2)
        runs = _flow_runs()
        if runs:
            self._logger.warning("Drain ended with %d flow runs still going; stopping them", len(runs))
            for proc in runs:
                try:
                    os.killpg(os.getpgid(proc.pid), signal.SIGTERM)
                except ProcessLookupError:
                    continue
            with anyio.move_on_after(CRASH_REPORT_SECONDS):
                while self._in_flight():
                    await anyio.sleep(0.2)
        self._logger.info("Drained; worker %r exits", self.name)


def _flow_runs() -> list[psutil.Process]:
    return flow_run_processes(psutil.Process(os.getpid()))
