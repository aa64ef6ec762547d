"""Domain errors: raised by the library, turned into one line and an exit code at the CLI edge.

Exit codes (also in docs/exit-codes.md):
  0  success
  1  a run finished but one or more tables failed
  2  bad input: configuration, unknown table, invalid option
  3  a database (source or target) cannot be reached
  4  the Prefect API cannot be reached or refused a request
 69  no worker came online on a work pool within the start timeout (EX_UNAVAILABLE)
 75  skipped: another orchestrator run is active somewhere in the fleet (EX_TEMPFAIL)
130  `etlctl run` interrupted by Ctrl+C (SIGINT); 143 by SIGTERM
"""


class EtlError(Exception):
    """Base of every error a user can act on; the message says what is wrong and how to fix it."""

    exit_code = 2


class ConfigError(EtlError):
    """The configuration file is missing, malformed or inconsistent."""


class UnknownTableError(EtlError):
    """A table named in the configuration or on the command line does not exist in the source."""


class UnsupportedError(EtlError):
    """A database dialect or column type that this version cannot move faithfully."""


class DatabaseUnreachableError(EtlError):
    """The source or target database refused the connection."""

    exit_code = 3


class PrefectUnavailableError(EtlError):
    """The Prefect API is down or answered with an error."""

    exit_code = 4


class AlreadyRunningError(EtlError):
    """Another `etlctl run` holds the fleet-wide orchestrator lock; this one did nothing."""

    exit_code = 75


class NoWorkerError(EtlError):
    """No worker was online on a pool the batch needs for the whole start timeout; its runs were
    cancelled, so a worker started later does not load them with nobody waiting."""

    exit_code = 69


class DuplicateKeyError(EtlError):
    """An incremental table's primary_key is not unique in the source; nothing was written."""


class TableBusyError(EtlError):
    """Another load of the same table held its lock in the target for too long; this one did nothing."""

    exit_code = 1


class BatchInterruptedError(EtlError):
    """`etlctl run` got SIGINT or SIGTERM: the batch's queued runs were cancelled (exit 128 + signal)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class DiskFullError(EtlError):
    """The target's disk filled up during a load; the load was rolled back (a failed table)."""

    exit_code = 1


class RowCountMismatchError(EtlError):
    """The loaded row count differs from the source's; the load was rolled back (a failed table)."""


def first_line(exc: BaseException, limit: int = 500) -> str:
    """The part of an error worth a log line or a state row: drivers append SQL and parameters."""
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:limit]
