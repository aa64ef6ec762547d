"""A worker's API client that remembers deployments and flows for a few seconds.

Prefect's worker reads a run's deployment twice and its flow once for every run it starts (an
existence check, then the job configuration), and the run's process reads the deployment again.
In a batch every run has the same deployment and flow, so on a busy worker those are three API
round trips per table that return what the last table got. Within `TTL_SECONDS` they come from
here; after it the next run reads them afresh, so a redeploy (new job variables, a deleted
deployment) reaches a worker's runs within that time.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

TTL_SECONDS = 10.0


class CachedReads:
    """Delegates everything to `client`; `read_deployment` and `read_flow` by id are remembered."""

    def __init__(self, client: Any, ttl: float = TTL_SECONDS) -> None:
        self.wraps = client
        self._client = client
        self._ttl = ttl
        self._seen: dict[tuple[str, UUID], tuple[float, Any]] = {}

    async def read_deployment(self, deployment_id: UUID) -> Any:
        return await self._remembered("deployment", deployment_id, self._client.read_deployment)

    async def read_flow(self, flow_id: UUID) -> Any:
        return await self._remembered("flow", flow_id, self._client.read_flow)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def _remembered(self, kind: str, key: UUID, read: Callable[[UUID], Awaitable[Any]]) -> Any:
        now = time.monotonic()
        hit = self._seen.get((kind, key))
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        value = await read(key)
        self._seen[(kind, key)] = (now, value)
        return value
