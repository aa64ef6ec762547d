"""How hosts, workers and runs are named, in one place, because the fleet's health depends on it.

Workers are `<host>-NN`; Prefect's process worker records `<hostname>:<pid>` as each flow run's
infrastructure pid. Matching the two is how a run is traced to its host and a dead host is found.
"""

from __future__ import annotations

import re
import socket

from flows.errors import ConfigError

VARIABLE_PREFIX = "etlctl_machine_"


def this_host() -> str:
    """The short host name: what a host registers under and prefixes its workers with."""
    return socket.gethostname().split(".")[0]


def worker_name(host: str, index: int) -> str:
    return f"{host}-{index:02d}"


def host_of_worker(name: str) -> str:
    return name.rsplit("-", 1)[0]


def run_host(infrastructure_pid: str | None) -> str | None:
    """`web-3.example.org:4242` -> `web-3`."""
    return infrastructure_pid.split(":")[0].split(".")[0] if infrastructure_pid else None


def variable_name(host: str) -> str:
    """The host's inventory entry; Prefect variable names allow lower-case letters, digits and _."""
    if not host or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", host):
        raise ConfigError(f"{host!r} is not a usable host name (letters, digits, '.', '-', '_')")
    return VARIABLE_PREFIX + re.sub(r"[^a-z0-9_]", "_", host.lower())
