"""How hosts, workers and runs are named, and the environment variables that carry those names,
in one place, because the fleet's health depends on every part agreeing on them.

Workers are `<host>-NN`, and a worker labels every flow run it claims with its name
(`prefect.worker.name`): that label is how a run is traced to its host and a dead host is found.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Mapping

from flows.errors import ConfigError

VARIABLE_PREFIX = "etlctl_machine_"
WORKER_TYPE = "etlctl"  # the worker type of flows.fleet.drain_worker, named without importing prefect
WORKER_ENV = "ETLCTL_WORKER_NAME"  # inherited by flow runs, which record it with each table
API_ENV = "PREFECT_API_URL"  # where every client, worker and flow run finds the Prefect API
DRAIN_ENV = "ETLCTL_DRAIN_SECONDS"  # how long a stopping worker lets its runs finish


def this_host() -> str:
    """The short host name: what a host registers under and prefixes its workers with."""
    return socket.gethostname().split(".")[0]


def worker_name(host: str, index: int) -> str:
    return f"{host}-{index:02d}"


def host_of_worker(name: str) -> str:
    return name.rsplit("-", 1)[0]


WORKER_LABEL = "prefect.worker.name"
# Ends the message of every run marked Crashed to be resubmitted (by the orchestrator or by a
# restarted worker); a run whose process starts after such a state ends without loading.
RESUBMITTED = "the table will be resubmitted"


def run_host(labels: Mapping[str, object] | None) -> str | None:
    """The host of the worker that claimed a flow run, from the run's labels; None if unclaimed."""
    worker = (labels or {}).get(WORKER_LABEL)
    return host_of_worker(worker) if isinstance(worker, str) else None


def variable_name(host: str) -> str:
    """The host's inventory entry; Prefect variable names allow lower-case letters, digits and _."""
    if not host or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", host):
        raise ConfigError(f"{host!r} is not a usable host name (letters, digits, '.', '-', '_')")
    return VARIABLE_PREFIX + re.sub(r"[^a-z0-9_]", "_", host.lower())
