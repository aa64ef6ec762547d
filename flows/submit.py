"""Create many child flow runs at once: the orchestrator's fan-out, bounded.

One `run_deployment` costs four API round trips in series (deployment, flow, the parent's link
task run, the flow run); made one after another for every table, workers sat idle while the last
tables were still being created. `SUBMIT_CONCURRENCY` of them in flight at once keep the server
busy without flooding it. They run on one event loop in this thread, so Prefect's per-flow-run
bookkeeping (the dynamic key of each link task run) is never raced. A retried submission may leave
an extra link task run behind (cosmetic, in the UI); never a second flow run.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import httpx
from prefect.deployments import arun_deployment
from prefect.exceptions import PrefectHTTPStatusError

SUBMIT_CONCURRENCY = 8
# A SQLite-backed server answers 503 ("database is locked") under bursts of writes, beyond what
# Prefect's client retries; the idempotency key makes another try safe (it returns the same run).
SUBMIT_ATTEMPTS = 6


@dataclass(frozen=True)
class Submission:
    """One child run to create: what `run_deployment` takes, keyed by `name`."""

    name: str
    deployment: str
    key: str
    parameters: Mapping[str, Any]
    tags: tuple[str, ...] = ()
    run_name: str | None = None


def submit_all(submissions: list[Submission], concurrency: int = SUBMIT_CONCURRENCY) -> dict[str, UUID]:
    """Create every run (idempotently: an existing run with the same key is reused); name -> run id."""
    return asyncio.run(_submit_all(submissions, concurrency))


async def _submit_all(submissions: list[Submission], concurrency: int) -> dict[str, UUID]:
    gate = asyncio.Semaphore(concurrency)

    async def one(item: Submission) -> UUID:
        async with gate:
            for attempt in range(1, SUBMIT_ATTEMPTS + 1):
                try:
                    run = await arun_deployment(
                        item.deployment,
                        parameters=dict(item.parameters),
                        timeout=0,
                        idempotency_key=item.key,
                        tags=list(item.tags),
                        flow_run_name=item.run_name or item.name,
                        as_subflow=True,
                    )
                    return run.id
                except (PrefectHTTPStatusError, httpx.TransportError) as exc:
                    if attempt == SUBMIT_ATTEMPTS or not _transient(exc):
                        raise
                    await asyncio.sleep(min(2.0**attempt, 30.0) * random.uniform(0.5, 1.0))
        raise AssertionError("unreachable")

    ids = await asyncio.gather(*(one(item) for item in submissions))
    return {item.name: run_id for item, run_id in zip(submissions, ids, strict=True)}


def _transient(exc: Exception) -> bool:
    if isinstance(exc, PrefectHTTPStatusError):
        return exc.response.status_code in (408, 429) or exc.response.status_code >= 500
    return True
