"""`prefect server start`, with its SQLite write transactions queued instead of failed.

    python -m flows.fleet.prefect_server server start --port 4200   # what flows.fleet.server runs

Prefect's server begins most of its transactions on SQLite as `BEGIN DEFERRED`: a transaction reads
first and asks for the write lock at its first write. If another connection committed in between,
SQLite cannot let it write on its older snapshot and fails it at once with "database is locked",
whatever the busy timeout; the API answers 503, and Prefect's client waits 2 s before it tries
again. With a few workers on a SQLite-backed server that was one request in ten to thirty
(docs/performance.md, "Launch"): a worker's next table stalled 2 s, a run creation failed. Prefect
already begins its state changes with `BEGIN IMMEDIATE`, which takes the write lock first and waits
for it under the busy timeout; here every transaction Prefect begins does. Reads outside a
transaction are untouched, and so is a server on PostgreSQL.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator
from typing import Any

from prefect.server.database import configurations


def queue_sqlite_writers() -> None:
    """Make every transaction Prefect's server begins on SQLite take the write lock first."""
    sqlite = configurations.AioSqliteConfiguration
    deferred = sqlite.begin_transaction

    @contextlib.asynccontextmanager
    async def begin_immediate(self: Any, session: Any, with_for_update: bool = False) -> AsyncIterator[Any]:
        async with deferred(self, session, with_for_update=True) as transaction:
            yield transaction

    sqlite.begin_transaction = begin_immediate


def main() -> int:
    queue_sqlite_writers()
    from prefect.cli import app

    sys.argv[0] = "prefect"
    return app()


if __name__ == "__main__":
    sys.exit(main())
