"""`etlctl worker exec`: what supervisord and systemd run for each worker slot.

It loads the host's env file (supervisord has no env-file option), names the worker, and then
*replaces itself* with `prefect worker start --type etlctl`, so the process supervisord or systemd
watches and signals is the worker itself, with nothing in between to lose a signal.
"""

from __future__ import annotations

import os
from pathlib import Path

from flows.config import CONFIG_ENV, DEFAULT_POOL, pool_from_env, worker_limits
from flows.errors import PrefectUnavailableError
from flows.fleet.envfile import read_env_file
from flows.fleet.naming import API_ENV, WORKER_ENV, WORKER_TYPE
from flows.fleet.processes import prefect_executable

# Prefect polls every 10 s by default; a table waits that long for a free worker. 2 s costs the
# server one cheap query per worker every 2 s and takes most of the idle out of a batch.
QUERY_ENV = "PREFECT_WORKER_QUERY_SECONDS"
DEFAULT_QUERY_SECONDS = "2"
# A worker counts as offline after 3 missed heartbeats; at 10 s (Prefect: 30 s) the orchestrator
# learns within ~30 s that a whole host is gone and resubmits its tables.
HEARTBEAT_ENV = "PREFECT_WORKER_HEARTBEAT_SECONDS"
DEFAULT_HEARTBEAT_SECONDS = "10"


def worker_command(name: str, pool: str, limit: int) -> list[str]:
    """The one command line of a worker slot, whoever starts it (supervisord, systemd, `workers start`)."""
    return [
        prefect_executable(),
        "worker",
        "start",
        "--pool",
        pool,
        "--type",
        WORKER_TYPE,
        "--limit",
        str(limit),
        "--name",
        name,
    ]


def worker_env(base: dict[str, str], name: str) -> dict[str, str]:
    """`base` with etlctl's worker defaults filled in (the caller's own values win) and the slot's name."""
    return {
        QUERY_ENV: DEFAULT_QUERY_SECONDS,
        HEARTBEAT_ENV: DEFAULT_HEARTBEAT_SECONDS,
        **base,
        WORKER_ENV: name,
    }


def exec_worker(name: str, pool: str | None, limit: int, env_file: Path | None) -> None:
    """Never returns: the process becomes the Prefect worker. `--pool` wins over $ETLCTL_POOL, then
    $PREFECT_WORK_POOL, either of which may come from the env file (a system supervisord has no
    other place to set it)."""
    env = dict(os.environ)
    if env_file is not None:
        env.update(read_env_file(env_file))
    pool = pool or pool_from_env(env) or DEFAULT_POOL
    if not env.get(API_ENV):
        raise PrefectUnavailableError(
            f"{API_ENV} is not set for worker {name}; put it in the env file"
            + (f" {env_file}" if env_file else "")
        )
    worker_limits(env.get(CONFIG_ENV))  # a bad [workers] value: etlctl's one line, not the worker's traceback
    command = worker_command(name, pool, limit)
    os.execve(command[0], command, worker_env(env, name))
