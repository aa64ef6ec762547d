"""The dead-man's switch of `etlctl run --ping-url` (healthchecks-style URLs): GET <url>/start when
the batch starts, and GET <url>/<exit code> whenever the command ends, whatever the code.

    with pinged_exit(url):
        ...                       # sys.exit(n) or an EtlError: <url>/n is sent, then it propagates

No Prefect import: the closing ping must go out even when the Prefect API is the problem (exit 4).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from flows.errors import EtlError

TIMEOUT_SECONDS = 10


def ping(url: str | None, suffix: str) -> None:
    """GET <url>/<suffix>. A monitoring hiccup must never fail the load, so errors are logged, not
    raised; the URL may carry a token, so it is never printed."""
    if not url:
        return
    try:
        httpx.get(f"{url.rstrip('/')}/{suffix}", timeout=TIMEOUT_SECONDS).raise_for_status()
    except httpx.HTTPError as exc:
        logging.getLogger("etlctl").warning(
            "dead-man's switch ping (%s) failed: %s", suffix, type(exc).__name__
        )


def exit_code(exc: BaseException) -> int:
    """The code the command ends with for `exc`, as cli.EtlGroup and Click compute it."""
    if isinstance(exc, SystemExit):
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    if isinstance(exc, EtlError):
        return exc.exit_code
    return 1  # a bug's traceback, or Ctrl+C (Click's "Aborted!")


@contextmanager
def pinged_exit(url: str | None) -> Iterator[None]:
    """Send <url>/<exit code> when the block ends, by sys.exit or by any exception."""
    try:
        yield
    except BaseException as exc:
        ping(url, str(exit_code(exc)))
        raise
    ping(url, "0")
