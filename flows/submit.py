"""Create the orchestrator's table runs: Prefect's bulk create, up to 100 runs per request.

    ids = submit_all("process-table-etl/process-table-etl-deployment", submissions)

The first run is created by `run_deployment`, Prefect's own way: it reads the deployment and creates
the task run that links child runs to the calling flow run, so the UI shows the tables as the
orchestrator's subflows. The others are created through the deployment's bulk endpoint
(`POST /deployments/{id}/create_flow_run/bulk`), linked to the same task run: one request per 100
tables where `run_deployment` costs three per table. On a SQLite-backed server with three workers,
30 runs took 13-28 s one request at a time and about 1 s in bulk (docs/performance.md, "Launch").

Every run carries an idempotency key, so a request tried again returns the runs an earlier try
created instead of creating them twice. That makes retrying cheap and safe, and a SQLite-backed
server needs it: it fails a whole bulk transaction with "database is locked" whenever another writer
commits between its first read and its first insert. A server without the bulk endpoint gets one
`run_deployment` per table, `CONCURRENCY` at a time.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import UUID

import httpx
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.actions import DeploymentFlowRunCreate
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import arun_deployment
from prefect.exceptions import PrefectHTTPStatusError
from prefect.states import Scheduled, to_state_create

from flows.errors import PrefectUnavailableError

BULK_LIMIT = 100  # the most the server takes in one request
ATTEMPTS = 30  # each try is one request; "database is locked" is common on a busy SQLite server
CONCURRENCY = 8  # one run per request: without the bulk endpoint
NO_BULK = (404, 405)  # a Prefect server older than the bulk endpoint

T = TypeVar("T")


@dataclass(frozen=True)
class Submission:
    """One table run to create: its name (the table, also the run's name), key and parameters."""

    name: str
    key: str
    parameters: Mapping[str, Any]
    tags: tuple[str, ...] = ()


def submit_all(deployment: str, submissions: list[Submission]) -> dict[str, UUID]:
    """Create a run of `deployment` for each submission (an existing run with the same key is
    reused); name -> run id."""
    return asyncio.run(_submit_all(deployment, submissions))


async def _submit_all(deployment: str, submissions: list[Submission]) -> dict[str, UUID]:
    if not submissions:
        return {}
    async with get_client() as client:
        first = await _retried(lambda: _run_deployment(client, deployment, submissions[0]))
        ids = {submissions[0].name: first.id}
        rest = submissions[1:]
        for at in range(0, len(rest), BULK_LIMIT):
            created = await _bulk(client, first, rest[at : at + BULK_LIMIT])
            if created is None:
                ids.update(await _one_by_one(client, deployment, rest[at:]))
                break
            ids.update(created)
    return {item.name: ids[item.name] for item in submissions}


async def _run_deployment(client: PrefectClient, deployment: str, item: Submission) -> FlowRun:
    return await arun_deployment(
        deployment,
        parameters=dict(item.parameters),
        timeout=0,
        idempotency_key=item.key,
        tags=list(item.tags),
        flow_run_name=item.name,
        as_subflow=True,
        client=client,
    )


async def _bulk(client: PrefectClient, first: FlowRun, chunk: list[Submission]) -> dict[str, UUID] | None:
    """Create `chunk` like `first` (same deployment, same parent link); None if the server cannot."""
    body = {
        item.name: DeploymentFlowRunCreate(
            name=item.name,
            parameters=dict(item.parameters),
            tags=list(item.tags),
            idempotency_key=item.key,
            parent_task_run_id=first.parent_task_run_id,
            state=to_state_create(Scheduled()),
        ).model_dump(mode="json", exclude_unset=True)
        for item in chunk
    }
    ids: dict[str, UUID] = {}
    errors: dict[str, str] = {}
    for attempt in range(1, ATTEMPTS + 1):
        todo = [name for name in body if name not in ids]
        try:
            response = await client.request(
                "POST",
                "/deployments/{id}/create_flow_run/bulk",
                path_params={"id": first.deployment_id},
                json=[body[name] for name in todo],
            )
        except PrefectHTTPStatusError as exc:
            if exc.response.status_code in NO_BULK and not ids:
                return None
            if not _transient(exc):
                raise
            errors = {name: f"HTTP {exc.response.status_code}" for name in todo}
        except httpx.TransportError as exc:
            errors = {name: str(exc) for name in todo}
        else:
            errors = {}
            for name, result in zip(todo, response.json()["results"], strict=True):
                if result["status"] == "CREATED":
                    ids[name] = UUID(result["flow_run_id"])
                else:
                    errors[name] = result.get("error") or "no reason given"
            if not errors:
                return ids
        await asyncio.sleep(_backoff(attempt))
    name, why = next(iter(errors.items()))
    raise PrefectUnavailableError(
        f"could not create the runs of {len(errors)} tables ({', '.join(sorted(errors))}) after "
        f"{ATTEMPTS} tries; the Prefect server said, for {name}: {why.splitlines()[0]}"
    )


async def _one_by_one(client: PrefectClient, deployment: str, items: list[Submission]) -> dict[str, UUID]:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(item: Submission) -> UUID:
        async with gate:
            return (await _retried(lambda: _run_deployment(client, deployment, item))).id

    ids = await asyncio.gather(*(one(item) for item in items))
    return {item.name: run_id for item, run_id in zip(items, ids, strict=True)}


async def _retried(call: Callable[[], Awaitable[T]]) -> T:
    """`call()`, tried again on an answer a busy server gives (the idempotency key makes it safe)."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return await call()
        except (PrefectHTTPStatusError, httpx.TransportError) as exc:
            if attempt == ATTEMPTS or not _transient(exc):
                raise
            await asyncio.sleep(_backoff(attempt))
    raise AssertionError("unreachable")


def _backoff(attempt: int) -> float:
    """Short waits first: a lock collision clears in milliseconds; at most 5 s when the server is down."""
    return min(0.1 * 2**attempt, 5.0) * random.uniform(0.5, 1.0)


def _transient(exc: Exception) -> bool:
    if isinstance(exc, PrefectHTTPStatusError):
        return exc.response.status_code in (408, 429) or exc.response.status_code >= 500
    return True
