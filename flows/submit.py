"""Create many child flow runs at once: the orchestrator's fan-out, bounded.

One `run_deployment` costs four API round trips (deployment, flow, the parent's link task run,
the flow run). One after another, 1,000 tables took minutes before the first worker could claim
the last of them; `SUBMIT_CONCURRENCY` of them in flight at once keep the server busy without
flooding it. They run on one event loop in this thread, so Prefect's per-flow-run bookkeeping
(the dynamic key of each link task run) is never raced.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from prefect.deployments import arun_deployment

SUBMIT_CONCURRENCY = 8


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

    ids = await asyncio.gather(*(one(item) for item in submissions))
    return {item.name: run_id for item, run_id in zip(submissions, ids, strict=True)}
