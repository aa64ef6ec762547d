"""What runs on each host of the lab: PostgreSQL and the Prefect server on `server`, supervisord and
its workers on `w1` and `w2`.

    cluster = PgCluster(root / "pg", HOSTS["server"], PG_PORT, password)
    start_postgres(cluster, env)                      # listening on the server's address, 3 databases
    start_prefect(root / "server", database_url, env) # `etlctl server start` on the server host
    pid = start_supervisord("w1", root / "w1", worker_env, env)
    register_workers("w1", root / "w1", client_env)   # `etlctl machine register`, run on w1 itself

Each host is set up as an operator would set up a real one, with etlctl's own commands and ops/
templates; what differs is only that the host is a namespace (lab.network).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from pathlib import Path

import psutil
import psycopg

from flows.fleet.environment import STATE_ENV
from flows.fleet.render import ops_dir
from lab.network import HOSTS, SUBNET, on_host
from lab.postgres import PgCluster, bin_dir, start_cluster
from lab.shell import LabError, read, sh, until

PG_PORT = 5432
API_PORT = 4200
API_URL = f"http://{HOSTS['server']}:{API_PORT}/api"
WORKERS_PER_HOST = 2
DRAIN_SECONDS = 30  # teardown stops idle workers; nothing should need the 600 s default
PASSWORD_ENV = "ETLCTL_LAB_PG_PASSWORD"
BIN = Path(sys.executable).parent  # etlctl, supervisord, supervisorctl: this environment's own
_LAB_PARENT = Path(__file__).resolve().parent.parent  # lab/ is not installed: `-m lab` runs from here
_SUPERVISOR_SECTIONS = ("supervisord", "unix_http_server", "rpcinterface:supervisor", "supervisorctl")


# ---- the server host: PostgreSQL -------------------------------------------------------------------


def start_postgres(cluster: PgCluster, env: dict[str, str]) -> None:
    """The cluster started inside the server's namespace (`python -m lab --serve-postgres`), reachable
    from the subnet, with databases prefect, source and target. The password travels in the environment.
    """
    path = os.pathsep.join(filter(None, [str(_LAB_PARENT), env.get("PYTHONPATH")]))
    env = {**env, PASSWORD_ENV: cluster.password, "PYTHONPATH": path}
    sh(on_host("server", [sys.executable, "-m", "lab", "--serve-postgres", cluster.root]), env=env)
    until(lambda: _accepts(cluster), 30, f"PostgreSQL accepting {SUBNET} on {cluster.host}")
    for database in ("prefect", "source", "target"):
        cluster.create_database(database)


def serve_postgres(root: Path) -> None:
    """`--serve-postgres ROOT`, run inside etl-server: the cluster listens on the server's address only.

    The password comes from the environment, never the command line.
    """
    cluster = start_cluster(root, PG_PORT, os.environ[PASSWORD_ENV], host=HOSTS["server"])
    allow_subnet(cluster, SUBNET)


def allow_subnet(cluster: PgCluster, subnet: str) -> None:
    """initdb lets TCP clients in from loopback only; the fleet's hosts connect from the lab subnet.

    Reloading is asynchronous: the caller polls a connection from the subnet until it is let in.
    """
    hba = cluster.root / "data" / "pg_hba.conf"
    with hba.open("a", encoding="utf-8") as out:
        out.write(f"\n# the fleet lab's hosts\nhost all all {subnet} scram-sha-256\n")
    pg_ctl = str(bin_dir() / "pg_ctl")
    command = [pg_ctl, "reload", "-D", str(cluster.root / "data")]
    sh(["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command)


def _accepts(cluster: PgCluster) -> bool:
    try:
        with psycopg.connect(
            host=cluster.host,
            port=cluster.port,
            user="etl",
            password=cluster.password,
            dbname="postgres",
            connect_timeout=3,
        ):
            return True
    except psycopg.OperationalError:
        return False


# ---- the server host: Prefect ----------------------------------------------------------------------


def start_prefect(state: Path, database_url: str, env: dict[str, str]) -> None:
    """`etlctl server start` on the server host, its database on PostgreSQL, without the UI."""
    env = {
        **env,
        STATE_ENV: str(state),
        # the option's environment variable: a URL with a password never goes on a command line
        "ETLCTL_SERVER_DATABASE_URL": database_url,
    }
    command = [BIN / "etlctl", "server", "start", "--host", HOSTS["server"], "--port", str(API_PORT)]
    sh(on_host("server", [*command, "--no-ui"]), env=env, timeout=150)


# ---- the worker hosts ------------------------------------------------------------------------------


def start_supervisord(host: str, home: Path, worker_env: dict[str, str], env: dict[str, str]) -> int:
    """The host's own supervisord, with an env file (mode 0600) for its workers; its pid."""
    (home / "logs").mkdir(parents=True)
    (home / "conf.d").mkdir()
    env_file = home / "etlctl.env"
    env_file.touch(mode=0o600)
    env_file.write_text("".join(f"{key}={value}\n" for key, value in worker_env.items()), encoding="utf-8")
    conf = home / "supervisord.conf"
    conf.write_text(supervisord_main_config(home, home / "conf.d"), encoding="utf-8")
    sh(on_host(host, [BIN / "supervisord", "-c", conf]), env=env)
    pid_file = home / "supervisord.pid"
    return int(until(lambda: read(pid_file), 20, f"supervisord pid file on {host}"))


def register_workers(host: str, home: Path, client_env: dict[str, str]) -> None:
    """`etlctl machine register` on the host itself, as an operator would: WORKERS_PER_HOST workers."""
    register = [
        BIN / "etlctl",
        "machine",
        "register",
        "--host",
        host,
        "--workers",
        str(WORKERS_PER_HOST),
        "--supervisor",
        "--target-dir",
        home / "conf.d",
        "--supervisor-config",
        home / "supervisord.conf",
        "--env-file",
        home / "etlctl.env",
        "--user",
        "-",
        "--home",
        home,
    ]
    sh(on_host(host, register), env=client_env)


def stop_supervisord(host: str, home: Path, pid: int, env: dict[str, str]) -> None:
    """supervisorctl shutdown, then wait until supervisord has stopped its draining workers and exited."""
    with contextlib.suppress(LabError):
        sh(on_host(host, [BIN / "supervisorctl", "-c", home / "supervisord.conf", "shutdown"]), env=env)
    until(lambda: not psutil.pid_exists(pid), DRAIN_SECONDS + 30, f"supervisord on {host} exiting")


def supervisord_main_config(home: Path, include_dir: Path) -> str:
    """A host's own supervisord.conf: ops/supervisord.conf without its program, plus an [include].

    The template's %(ENV_ETLCTL_HOME)s becomes the host's home, so supervisorctl needs no environment;
    `etlctl machine register` writes the [program:etl-worker] file into `include_dir`.
    """
    text = (ops_dir() / "supervisord.conf").read_text(encoding="utf-8")
    sections = re.split(r"^(?=\[)", text, flags=re.MULTILINE)
    kept = [s for s in sections if s.startswith("[") and s[1 : s.index("]")] in _SUPERVISOR_SECTIONS]
    body = "".join(kept).replace("%(ENV_ETLCTL_HOME)s", str(home))
    return (
        f"; the fleet lab's supervisord for {home.name}, from etlctl's ops/supervisord.conf\n\n"
        f"{body.rstrip()}\n\n[include]\nfiles = {include_dir}/*.conf\n"
    )
