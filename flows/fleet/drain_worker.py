"""The `etlctl` worker type: Prefect's process worker, plus a drain on SIGTERM and a fast launch.

    prefect worker start --pool etl-tables --type etlctl --limit 1 --name host-01

Fast launch (docs/performance.md, "Launch"): each flow run is forked from a warm interpreter
(flows.fleet.launcher), still one process and session per run; when a run ends, the freed slot
claims the next scheduled run at once instead of at the next poll, and an idle worker claims a run
as soon as Prefect's event stream says it was scheduled (flows.fleet.schedule_watch). While every
slot is busy the worker does not poll at all, so a busy fleet asks the server less than Prefect's
worker does.

Prefect's own worker swallows the first SIGTERM and keeps claiming runs, and the second one kills
it while its flow runs live on in their own process groups (see docs/operations.md). This worker
is registered through the package's `prefect.collections` entry point, so `prefect worker start`
finds it, and it changes only that: on SIGTERM or SIGINT it stops claiming runs, lets the runs it
has finish, and exits 0. A run still going after $ETLCTL_DRAIN_SECONDS (default 600) is sent
SIGTERM while this worker still reads its output, so Prefect records it Crashed and the orchestrator
resubmits the table. A second signal skips the wait.

Limits (`[workers]` of the config, read at start; flows.limits): each forked run gets `nice`, and
its RSS is watched against `memory_max` (flows.fleet.memory_watch): over it, the run is killed and
ends Failed, naming the table and the limit. `cpu_quota` is systemd's to apply (CPUQuota=).
"""

from __future__ import annotations

import asyncio
import os
import signal
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import psutil
from httpx import HTTPStatusError
from prefect.client.schemas.responses import WorkerFlowRunResponse
from prefect.flows import load_flow_from_flow_run
from prefect.runner._flow_run_executor import FlowRunExecutorContext
from prefect.types._datetime import now
from prefect.workers.process import ProcessJobConfiguration, ProcessWorker, ProcessWorkerResult

from flows.config import worker_limits
from flows.fleet.launcher import ForkServer, WarmStarter, settings_environment
from flows.fleet.machines import is_draining
from flows.fleet.naming import DRAIN_ENV, WORKER_TYPE, host_of_worker
from flows.fleet.orphans import Submissions, release_orphaned_claims
from flows.fleet.processes import flow_run_processes
from flows.fleet.read_cache import CachedReads
from flows.fleet.schedule_watch import wake_on_schedule

DEFAULT_DRAIN_SECONDS = 600.0
CRASH_REPORT_SECONDS = 20.0
TEARDOWN_GRACE = 10.0
SYSTEMD_ENV = "INVOCATION_ID"  # systemd sets it in every service it starts
ORPHAN_CHECK_SECONDS = 30.0
ENTRYPOINT_ENV = "PREFECT__FLOW_ENTRYPOINT"  # read by prefect.flow_engine.load_flow


class EtlctlJobConfiguration(ProcessJobConfiguration):
    """Prefect's process job configuration, with the settings dump every run's environment starts
    from made once per settings object (flows.fleet.launcher.settings_environment): Prefect spells
    every setting out again for each run, 15% of a busy worker's CPU in a profile."""

    @classmethod
    def _base_environment(cls) -> dict[str, str]:
        return settings_environment()


class DrainingProcessWorker(ProcessWorker):
    type = WORKER_TYPE
    job_configuration = EtlctlJobConfiguration
    _description = "Prefect's process worker that drains on SIGTERM: finishes its runs, claims no new ones."
    _display_name = "etlctl process (draining)"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._draining = False
        self._host_drained = False
        self._signals = 0
        self._fork_server = ForkServer()
        self._cached_reads: CachedReads | None = None
        self._labelled: dict[Any, anyio.Event] = {}
        self._claim_soon = anyio.Event()
        self._poll_lock = anyio.Lock()
        self._host_drain_flag = False
        self._orphans_checked = False
        self._submissions = Submissions()
        self._executor_context: FlowRunExecutorContext | None = None
        self._executor_context_ready = anyio.Event()
        self._limits = worker_limits()  # [workers]: read once, at the worker's start
        if self._limits.cpu_quota is not None and SYSTEMD_ENV not in os.environ:
            self._logger.warning(
                "[workers] cpu_quota applies only to workers run by systemd (CPUQuota= in their unit); "
                "this worker's runs have no CPU quota"
            )

    async def get_and_submit_flow_runs(self) -> list[Any]:
        if self._draining:
            return []
        if self._limiter is not None and self._limiter.available_tokens < 1:
            self._last_polled_time = now("UTC")  # busy, not stuck: nothing to claim until a slot frees
            return []
        async with self._poll_lock:  # the timed poll and a slot's immediate poll never overlap
            return await self._claim()

    async def _claim(self, recheck_drain: bool = True) -> list[Any]:
        if recheck_drain:
            self._host_drain_flag = await self._host_is_draining()
        if self._host_drain_flag:
            if not self._host_drained:
                self._logger.info("Host is drained (etlctl machine drain): claiming no new flow runs")
            self._host_drained = True
            return []
        self._host_drained = False
        if not self._orphans_checked:  # at start, before the first claim; then _check_orphans
            await self._release_orphans()
            self._orphans_checked = True  # an API error above: the next poll tries again
        return await super().get_and_submit_flow_runs()

    async def _release_orphans(self) -> None:
        await release_orphaned_claims(
            self.client, self.name, self._work_pool_name, self._submissions, self._logger
        )

    async def _get_scheduled_flow_runs(self) -> list[Any]:
        """Prefect's query for scheduled runs, asking for as many as this worker has free slots.

        Prefect's worker asks for every scheduled run (up to the server's page of 200) and then
        submits as many as it has free slots, in the order received: the rest were serialized by
        the server and parsed by the worker at every poll for nothing (11% of a busy worker's CPU
        with 30 runs queued; 200 runs per poll per worker with 1,000 queued).
        """
        if self._limiter is None:
            return await super()._get_scheduled_flow_runs()
        body: dict[str, Any] = {
            "work_queue_names": list(self._work_queues),
            "scheduled_before": str(now("UTC") + timedelta(seconds=int(self._prefetch_seconds))),
            "limit": max(int(self._limiter.available_tokens), 1),
        }
        try:
            response = await self.client.request(
                "POST",
                "/work_pools/{name}/get_scheduled_flow_runs",
                path_params={"name": self._work_pool_name},
                json=body,
            )
        except HTTPStatusError as exc:
            if exc.response.status_code == 404:  # the pool is gone: Prefect's worker makes it again
                return []
            raise
        return WorkerFlowRunResponse.model_validate_list(response.json())

    async def _submit_run(self, flow_run: Any) -> None:
        """Prefect's submission (claim, start, pid recorded), noted for the orphan check."""
        self._submissions.begin(flow_run.id)
        try:
            await super()._submit_run(flow_run)
        finally:
            self._submissions.end(flow_run.id)

    async def _check_orphans(self) -> None:
        """Every 30 s, between claims rather than in front of one: a slot that frees claims at once."""
        while True:
            await anyio.sleep(ORPHAN_CHECK_SECONDS)
            if not self._orphans_checked or self._draining:
                continue
            try:
                async with self._poll_lock:
                    await self._release_orphans()
            except Exception as exc:  # the next check tries again
                self._logger.warning("Could not check for claims without a process: %s", exc)

    async def start(self, *args: Any, **kwargs: Any) -> None:
        try:
            async with anyio.create_task_group() as group:
                loop = asyncio.get_running_loop()
                for signum in (signal.SIGTERM, signal.SIGINT):
                    loop.add_signal_handler(signum, self._on_signal)

                async def run_worker() -> None:
                    await super(DrainingProcessWorker, self).start(*args, **kwargs)
                    group.cancel_scope.cancel()

                group.start_soon(run_worker)
                await group.start(self._hold_executor_context)
                group.start_soon(self._warm_up)
                group.start_soon(self._claim_when_woken)
                group.start_soon(self._wake_on_schedule)
                group.start_soon(self._check_orphans)
                await self._drained()
                group.cancel_scope.cancel()
        finally:
            self._fork_server.close()

    @property
    def client(self) -> Any:
        """Prefect's client, with deployment and flow reads remembered briefly (flows.fleet.read_cache)."""
        client = super().client
        if self._cached_reads is None or self._cached_reads.wraps is not client:
            self._cached_reads = CachedReads(client)
        return self._cached_reads

    async def _give_worker_labels_to_flow_run(self, flow_run_id: Any) -> None:
        """Label the run while its process is forked, not before: one round trip off the launch.
        `run` waits for the label before the run's pid is recorded, so a claimed run is labelled
        with its worker whenever it has no process yet (flows.rescue reads that)."""
        assert self._runs_task_group is not None
        self._labelled[flow_run_id] = done = anyio.Event()
        self._runs_task_group.start_soon(self._label, flow_run_id, done)

    async def _label(self, flow_run_id: Any, done: anyio.Event) -> None:
        try:
            await super()._give_worker_labels_to_flow_run(flow_run_id)
        except Exception as exc:  # a label is bookkeeping; the run goes on without it
            self._logger.warning("Could not label flow run %s with this worker: %s", flow_run_id, exc)
        finally:
            done.set()

    async def _propose_submitting_state(self, flow_run: Any) -> None:
        """Skipped: "Submitting" is a second Pending state, one more round trip before a table starts;
        the run is Pending (claimed) until its process proposes Running."""

    async def run(
        self,
        flow_run: Any,
        configuration: ProcessJobConfiguration,
        task_status: anyio.abc.TaskStatus[int] | None = None,
    ) -> ProcessWorkerResult:
        """Prefect's ProcessWorker.run with the process forked from the warm interpreter."""
        labelled = self._labelled.pop(flow_run.id, None)
        if configuration._command_configured:  # a job with its own command runs as Prefect runs it
            return await super().run(flow_run, configuration, task_status)
        task_status = task_status or anyio.TASK_STATUS_IGNORED
        await self._executor_context_ready.wait()
        ctx = self._executor_context
        with tempfile.TemporaryDirectory(suffix="prefect") as scratch:
            cwd = Path(configuration.working_dir or scratch).resolve()
            starter = WarmStarter(
                self._fork_server,
                {**configuration.env, **await self._entrypoint_env(flow_run)},
                cwd,
                configuration.stream_output,
                ctx.control_channel,
                self._limits,
            )
            executor = ctx.create_executor(
                flow_run, starter, resolve_flow=load_flow_from_flow_run, propose_submitting=False
            )
            execution = None

            async def execute(*, task_status: anyio.abc.TaskStatus[Any] = anyio.TASK_STATUS_IGNORED) -> None:
                nonlocal execution
                execution = await executor.submit(task_status=task_status)

            async with anyio.create_task_group() as group:
                handle = await group.start(execute)
                if labelled is not None:
                    await labelled.wait()
                task_status.started(handle.pid)
        if execution is None or execution.status_code is None:
            raise RuntimeError("Failed to start flow run process.")
        return ProcessWorkerResult(status_code=execution.status_code, identifier=str(execution.handle.pid))

    async def _entrypoint_env(self, flow_run: Any) -> dict[str, str]:
        """Tell the run's process its flow's module path, as Prefect's runner does, where that is all
        the deployment would tell it (no pull steps): it then skips reading the deployment again."""
        if flow_run.deployment_id is None:
            return {}
        deployment = await self.client.read_deployment(flow_run.deployment_id)
        entrypoint = deployment.entrypoint or ""
        if not entrypoint or ":" in entrypoint or deployment.pull_steps:
            return {}
        return {ENTRYPOINT_ENV: entrypoint}

    def _release_limit_slot(self, flow_run_id: Any) -> None:
        super()._release_limit_slot(flow_run_id)
        self._wake()

    def _wake(self) -> None:
        """Ask `_claim_when_woken` for a poll (the event is replaced after each wait: never bind it)."""
        self._claim_soon.set()

    async def _wake_on_schedule(self) -> None:
        """Poll as soon as a run is scheduled in the pool (flows.fleet.schedule_watch)."""
        while not getattr(self, "_has_successfully_synced", False) or self._work_pool is None:
            await anyio.sleep(0.2)
        await wake_on_schedule(self._work_pool.id, self._wake, self._logger)

    async def _claim_when_woken(self) -> None:
        """Poll once as soon as a run ends (or a claim is lost to another worker) or a run is
        scheduled, not at the next tick; wakes during a poll make one more poll after it."""
        while True:
            await self._claim_soon.wait()
            self._claim_soon = anyio.Event()
            if not getattr(self, "is_setup", False):
                continue
            try:
                if not self._draining and self._limiter is not None and self._limiter.available_tokens >= 1:
                    async with self._poll_lock:  # the drain flag read at the last timed poll stands
                        await self._claim(recheck_drain=False)
            except Exception as exc:  # the timed poll carries on regardless
                self._logger.warning("Immediate poll failed: %s", exc)

    async def _hold_executor_context(self, task_status: anyio.abc.TaskStatus[None]) -> None:
        """One executor context (API client, cancellation observer, control channel) for every run
        of this worker, as Prefect's Runner keeps one, rather than one set up per run."""
        async with FlowRunExecutorContext() as ctx:
            self._executor_context = ctx
            self._executor_context_ready.set()
            task_status.started()
            await anyio.sleep_forever()

    async def _warm_up(self) -> None:
        """Start the fork server before the first run needs it, but once the worker has registered:
        its imports would otherwise delay the worker's first heartbeat on a busy host."""
        while not getattr(self, "_has_successfully_synced", False):
            await anyio.sleep(0.2)
        try:
            await self._fork_server.start()
        except Exception as exc:
            self._logger.warning("Could not start the fork server yet (%s); will retry at the first run", exc)

    async def _host_is_draining(self) -> bool:
        try:
            return await is_draining(self.client, host_of_worker(self.name))
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
        if not self._in_flight():  # every run is final: their processes flush their logs and leave
            with anyio.move_on_after(TEARDOWN_GRACE):
                while self._signals < 2 and _flow_runs():
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
