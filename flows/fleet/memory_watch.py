"""The worker's memory limit on each table run: `[workers] memory_max` watched as the run's RSS.

An rlimit cannot do this job: RLIMIT_RSS is not enforced by Linux, and RLIMIT_AS counts address
space, not memory. A forked run maps well over a gigabyte of it before its first row (glibc
reserves an arena per thread, Prefect starts several threads) while its RSS is a fraction of
that, so a limit near the real need fails at random in whatever thread allocates next, as a
MemoryError or a thread that cannot start. So the worker reads the run's RSS (/proc, through
psutil) four times a second, and a run above the limit is killed, process group and all, and
marked Failed with a message naming the table, the limit and the RSS seen: Failed, not Crashed,
so it is neither retried in place nor resubmitted by the orchestrator into the same wall.

The RSS of a forked run includes the pages it shares with its fork server (Prefect and the flows
already imported: about 110 MiB when a run starts): the limit is what the run's process holds,
as `ps` shows it.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import anyio
import psutil
from prefect.client.orchestration import get_client
from prefect.logging import get_logger
from prefect.states import Failed

from flows.limits import WorkerLimits, mib, size_text

WATCH_SECONDS = 0.25

log = get_logger("etlctl.limits")


async def watch_memory(pid: int, limits: WorkerLimits, name: str) -> int | None:
    """Until the run `pid` ends: warn once over memory_high; over memory_max, kill its process
    group and return the RSS seen. None when the process ended first."""
    try:
        process = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None
    warned = False
    while True:
        try:
            rss = process.memory_info().rss
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            return None
        if limits.memory_max is not None and rss > limits.memory_max:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                return None
            log.error("%s", over_limit(name, limits.memory_max, rss))
            return rss
        if limits.memory_high is not None and rss > limits.memory_high and not warned:
            warned = True
            log.warning(
                "%s: RSS %s is over [workers] memory_high = %s (memory_max: %s)",
                name,
                mib(rss),
                size_text(limits.memory_high),
                size_text(limits.memory_max) if limits.memory_max else "none",
            )
        await anyio.sleep(WATCH_SECONDS)


def run_label(flow_run: Any) -> str:
    """`table 'orders'` for a table run, else the flow run's name."""
    table = (getattr(flow_run, "parameters", None) or {}).get("table")
    return f"table {table!r}" if table else f"flow run {flow_run.name!r}"


def over_limit(name: str, limit: int, rss: int) -> str:
    return (
        f"{name} stopped: its process reached {mib(rss)} of memory (RSS), over [workers] "
        f"memory_max = {size_text(limit)}; raise the limit or lower the table's chunk_size"
    )


async def fail_run(flow_run: Any, message: str) -> None:
    """Mark the killed run Failed before the worker sees its exit status (which it would report
    as Crashed: a proposal the server then refuses, the run being final). Forced: proposed,
    Failed would become AwaitingRetry (the flow's `retries`), a retry into the same wall."""
    try:
        async with get_client() as client:
            state = (await client.read_flow_run(flow_run.id)).state
            if state is None or not state.is_final():  # it did not finish just before the kill
                await client.set_flow_run_state(flow_run.id, Failed(message=message), force=True)
    except Exception as exc:  # the run still ends (Crashed) without this; say why it is not Failed
        log.error("could not mark flow run %s Failed (%s): %s", flow_run.id, exc, message)
