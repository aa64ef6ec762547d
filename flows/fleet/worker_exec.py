"""`etlctl worker exec`: what supervisord and systemd run for each worker slot.

It loads the host's env file (supervisord has no env-file option), names the worker, and then
*replaces itself* with `prefect worker start --type etlctl`, so the process supervisord or systemd
watches and signals is the worker itself, with nothing in between to lose a signal.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from flows.errors import ConfigError, PrefectUnavailableError
from flows.fleet.server import prefect_executable
from flows.fleet.workers import (
    DEFAULT_HEARTBEAT_SECONDS,
    DEFAULT_QUERY_SECONDS,
    HEARTBEAT_ENV,
    QUERY_ENV,
    WORKER_ENV,
    WORKER_TYPE,
)

POOL_ENV = "ETLCTL_POOL"
DEFAULT_POOL = "etl-tables"
_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as systemd's EnvironmentFile reads them: # comments, optional quotes."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read env file {path}: {exc.strerror}") from None
    values = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            raise ConfigError(f"{path}:{number}: expected KEY=VALUE")
        key, value = match.groups()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def worker_command(name: str, pool: str, limit: int) -> list[str]:
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


def exec_worker(name: str, pool: str | None, limit: int, env_file: Path | None) -> None:
    """Never returns: the process becomes the Prefect worker. `--pool` wins over ETLCTL_POOL,
    which may come from the env file (a system supervisord has no other place to set it)."""
    env = dict(os.environ)
    if env_file is not None:
        env.update(read_env_file(env_file))
    pool = pool or env.get(POOL_ENV) or DEFAULT_POOL
    if not env.get("PREFECT_API_URL"):
        raise PrefectUnavailableError(
            f"PREFECT_API_URL is not set for worker {name}; put it in the env file"
            + (f" {env_file}" if env_file else "")
        )
    env.setdefault(QUERY_ENV, DEFAULT_QUERY_SECONDS)
    env.setdefault(HEARTBEAT_ENV, DEFAULT_HEARTBEAT_SECONDS)
    env[WORKER_ENV] = name
    command = worker_command(name, pool, limit)
    os.execve(command[0], command, env)
