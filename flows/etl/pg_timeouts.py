"""Bounded waits on PostgreSQL, so that a silent database fails a table instead of hanging it.

    url, options, answer_timeout = engine_options(config.source_url)   # when applies(url)
    engine = create_engine(url, **options)
    bound_answers(engine, answer_timeout)

Three layers, each for a fault the others miss:
- `connect_timeout` (libpq's, applied by psycopg to the whole connection setup): a host that accepts
  TCP and never answers the startup, or a firewall that drops the SYN;
- TCP keepalives and `tcp_user_timeout`: a peer that vanished (host down, link cut) is noticed by
  the kernel within about 60 s, even while the client only waits to read;
- `answer_timeout` (etlctl's own): every single wait for the server (a query, the next chunk of a
  server-side cursor, a COPY write, a commit) ends after that many seconds, and the connection is
  closed. It catches what keeps the connection open and says nothing: a hung server or proxy.
libpq settings written in the URL's query (`?connect_timeout=5`) win over these defaults.
"""

from __future__ import annotations

from typing import Any

import psycopg
from sqlalchemy import Engine, event
from sqlalchemy.engine import URL

from flows.config import ANSWER_TIMEOUT_KEY, DEFAULT_ANSWER_TIMEOUT, DEFAULT_CONNECT_TIMEOUT

# keepalive probes after 30 s of silence, every 10 s, 3 missed: a dead peer is found in about 60 s;
# unacknowledged sent data (a COPY into a vanished host) gives up after 60 s
LIBPQ_DEFAULTS = {
    "connect_timeout": str(DEFAULT_CONNECT_TIMEOUT),
    "keepalives": "1",
    "keepalives_idle": "30",
    "keepalives_interval": "10",
    "keepalives_count": "3",
    "tcp_user_timeout": "60000",
}
_WAIT_TIMEOUT = getattr(psycopg.errors, "_WaitTimeout", psycopg.errors.OperationalError)


def applies(url: URL) -> bool:
    """Only psycopg connections (SQLAlchemy 2.1's default PostgreSQL driver) are bounded here."""
    return url.get_backend_name() == "postgresql" and url.get_driver_name() == "psycopg"


def engine_options(url: URL) -> tuple[URL, dict[str, Any], float]:
    """The URL without etlctl's own key, create_engine's connect_args, and the answer timeout."""
    timeout = float(url.query.get(ANSWER_TIMEOUT_KEY, DEFAULT_ANSWER_TIMEOUT))
    url = url.difference_update_query([ANSWER_TIMEOUT_KEY])
    connect_args = {k: v for k, v in LIBPQ_DEFAULTS.items() if k not in url.query}
    return url, {"connect_args": connect_args}, timeout


def probe_url(url: URL) -> URL:
    """`url` for a connection check, whose answers may take no longer than the connection."""
    seconds = url.query.get("connect_timeout", str(DEFAULT_CONNECT_TIMEOUT))
    return url.update_query_dict({ANSWER_TIMEOUT_KEY: seconds})


def bound_answers(engine: Engine, timeout: float) -> None:
    """Make every connection of `engine` a `BoundedConnection` with this answer timeout."""

    @event.listens_for(engine, "do_connect")
    def _connect(dialect, conn_rec, cargs, cparams) -> BoundedConnection:
        conn = BoundedConnection.connect(*cargs, **cparams)
        conn.answer_timeout = timeout
        return conn


class BoundedConnection(psycopg.Connection):
    """A psycopg connection whose waits for the server end after `answer_timeout` seconds.

    psycopg runs every blocking operation through `Connection.wait`; a wait that times out leaves
    a half-read answer behind, so the connection is closed, and every later use of it (the
    rollback on the way out included) fails with the same message instead of "connection closed".
    """

    answer_timeout: float | None = None
    _gave_up: str | None = None

    def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
        if self._gave_up:
            gen.close()
            raise psycopg.OperationalError(self._gave_up)
        if timeout is None:
            timeout = self.answer_timeout
        try:
            return super().wait(gen, interval, timeout)
        except _WAIT_TIMEOUT:
            where = f"{self.info.host}:{self.info.port}/{self.info.dbname}"
            self.pgconn.finish()
            self._gave_up = (
                f"PostgreSQL at {where} did not answer within {timeout:g} s (answer_timeout); "
                "connection closed"
            )
            raise psycopg.OperationalError(self._gave_up) from None
