"""The fleet: three hosts in network namespaces sharing one PostgreSQL and one Prefect server.

    with Lab(say=print) as lab:       # close() on the way out undoes everything, even half-built
        lab.build()                   # network, PostgreSQL, sample source, Prefect, setup + deploy, workers
        report = run_scenario(lab, "w1")   # lab.scenario: a batch, and w1 dies in the middle of it

Why namespaces: what the orchestrator's lost-host check guards against is a whole *host* dying, and
only separate hosts show it: workers named after their host, a PostgreSQL and a Prefect server reached
over a network, a host whose every process vanishes at once. The root namespace plays the cron host
that runs `etlctl setup`, `deploy` and `run`.

Needs root (`ip netns`, `unshare`), PostgreSQL's server binaries and the `postgres` user. The database
password lives only in this process, the environments of the processes it starts and the workers' env
files (mode 0600), never in argv or logs.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil

from flows.config import CONFIG_ENV
from flows.demo.sample import build_sample, write_sample_config
from flows.fleet.environment import STATE_ENV, server_home
from flows.fleet.naming import API_ENV, DRAIN_ENV
from flows.fleet.processes import is_alive
from flows.fleet.server import stop_server
from lab.hosts import (
    API_URL,
    BIN,
    DRAIN_SECONDS,
    PASSWORD_ENV,
    PG_PORT,
    WORKERS_PER_HOST,
    register_workers,
    start_postgres,
    start_prefect,
    start_supervisord,
    stop_supervisord,
)
from lab.network import (
    BRIDGE,
    GATEWAY,
    HOSTS,
    LAB_ENV,
    WORKER_HOSTS,
    create_network,
    delete_network,
    marked_processes,
    namespace,
)
from lab.postgres import PgCluster
from lab.preflight import TMP_DIR, TMP_PREFIX, check_prerequisites
from lab.shell import LabError, Say, sh, until

BIG_ROWS = 300_000  # the big table takes long enough on PostgreSQL that a host dies mid-batch
HEALTHY_TIMEOUT = 120.0
_PROXY_VARS = {"http_proxy", "https_proxy", "all_proxy", "no_proxy", "ftp_proxy"}


class Lab:
    """The fleet: build() it, run a scenario on it, close() it (or use it as a context manager).

    close() undoes whatever was built, in reverse order, even after a failure half-way.
    """

    def __init__(self, big_rows: int = BIG_ROWS, say: Say = print) -> None:
        self.big_rows = big_rows
        self._say = say
        self.lab_id = secrets.token_hex(4)
        self.password = "lab@" + secrets.token_hex(8) + ":x"  # URL-hostile on purpose
        self.root: Path | None = None
        self.cluster: PgCluster | None = None
        self.tables: list[str] = []
        self.timings: dict[str, float] = {}
        self.config: Path | None = None
        self.api = httpx.Client(base_url=API_URL, timeout=10.0, trust_env=False)
        self._network = False
        self._server_state: Path | None = None
        self._supervised: dict[str, int] = {}  # host -> supervisord pid
        self._batch: psutil.Popen | None = None
        self._started = time.monotonic()

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close(raise_errors=exc_info[0] is None)

    # ---- building ----

    def build(self) -> None:
        check_prerequisites()
        self.root = Path(tempfile.mkdtemp(prefix=TMP_PREFIX + self.lab_id + "-", dir=TMP_DIR))
        os.chmod(self.root, 0o755)  # PostgreSQL runs as postgres, and must reach its folder
        self.say(f"lab {self.lab_id} in {self.root}")
        with self.step("network"):
            self._network = True
            create_network()
            self.say(
                f"bridge {BRIDGE} {GATEWAY}/24; " + ", ".join(f"{namespace(h)} {a}" for h, a in HOSTS.items())
            )
        with self.step("postgresql"):
            self.cluster = PgCluster(self.root / "pg", HOSTS["server"], PG_PORT, self.password)
            start_postgres(self.cluster, self.base_env())
            self.say(f"PostgreSQL on server {HOSTS['server']}:{PG_PORT}: databases prefect, source, target")
        with self.step("sample source"):
            self.tables = build_sample(self.cluster.url("source"), big_rows=self.big_rows)
            self.say(f"sample source: {len(self.tables)} tables, {self.big_rows} rows in the biggest")
        with self.step("prefect server"):
            self._server_state = self.root / "server"
            database = self.cluster.url("prefect", "asyncpg").render_as_string(hide_password=False)
            start_prefect(self._server_state, database, self.base_env())
            self.api.get("/health").raise_for_status()  # and from the cron host, across the bridge
            self.say(f"Prefect server on server, PostgreSQL database: {API_URL}")
        with self.step("setup + deploy"):
            (self.root / "cron").mkdir()
            self._write_config()
            for command in ("setup", "deploy"):
                sh([BIN / "etlctl", command], env=self.client_env(self.root / "cron"))
            self.say("etlctl setup + deploy from the cron host (root namespace)")
        with self.step("worker hosts"):
            for host in WORKER_HOSTS:
                self._start_worker_host(host)
            until(self._all_healthy, HEALTHY_TIMEOUT, "healthy w1 and w2 in `etlctl machine ls`", 2.0)
            self.say("etlctl machine ls: " + ", ".join(f"{h} healthy" for h in WORKER_HOSTS))

    def _start_worker_host(self, host: str) -> None:
        home = self.root / host
        self._supervised[host] = start_supervisord(host, home, self.worker_env(), self.base_env())
        register_workers(host, home, self.client_env(home))
        self.say(
            f"{host} {HOSTS[host]}: supervisord + `etlctl machine register --workers {WORKERS_PER_HOST}`"
        )

    def _write_config(self) -> None:
        def url(database: str) -> str:
            return f"postgresql+psycopg://etl:${{{PASSWORD_ENV}}}@{HOSTS['server']}:{PG_PORT}/{database}"

        self.config = write_sample_config(self.root / "etlctl.toml", url("source"), url("target"))

    # ---- environments ----

    def base_env(self) -> dict[str, str]:
        """This machine's environment without Prefect or etlctl settings or proxies, marked as the lab's."""
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("PREFECT_", "ETLCTL_")) and key.lower() not in _PROXY_VARS
        }
        env["PATH"] = f"{BIN}:{env.get('PATH', '/usr/bin:/bin')}"  # supervisorctl, for machine register
        env["DO_NOT_TRACK"] = "1"  # Prefect's client telemetry: nothing leaves the lab
        env["PYTHONUNBUFFERED"] = "1"  # logs in the order things happened
        env[LAB_ENV] = self.lab_id
        return env

    def worker_env(self) -> dict[str, str]:
        """A worker host's env file: what `etlctl workers exec` loads."""
        return {
            API_ENV: API_URL,
            CONFIG_ENV: str(self.config),
            PASSWORD_ENV: self.password,
            DRAIN_ENV: str(DRAIN_SECONDS),
            "DO_NOT_TRACK": "1",
        }

    def client_env(self, home: Path) -> dict[str, str]:
        """An etlctl client (setup, deploy, run, machine ...) keeping its Prefect files under `home`."""
        return {
            **self.base_env(),
            **self.worker_env(),
            "PREFECT_HOME": str(home / "prefect-home"),
            STATE_ENV: str(home / "state"),
        }

    # ---- what the cron host does ----

    def machines(self) -> dict[str, dict[str, Any]]:
        """`etlctl machine ls --json` from the cron host: host -> its record and verdict."""
        out = sh([BIN / "etlctl", "machine", "ls", "--json"], env=self.client_env(self.root / "cron"))
        return {entry["host"]: entry for entry in json.loads(out.stdout)}

    def _all_healthy(self) -> bool:
        found = self.machines()
        return all(found.get(host, {}).get("verdict") == "healthy" for host in WORKER_HOSTS)

    def start_batch(self, log_path: Path) -> psutil.Popen:
        """`etlctl run` from the cron host, in its own process group, its output in `log_path`."""
        with log_path.open("wb") as log:
            self._batch = psutil.Popen(
                [str(BIN / "etlctl"), "run"],
                env=self.client_env(self.root / "cron"),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self._batch

    def host_lost_power(self, host: str) -> None:
        """Its supervisord is gone with it: teardown has nothing to shut down there."""
        self._supervised.pop(host, None)

    # ---- teardown ----

    def close(self, raise_errors: bool = True) -> None:
        """Undo everything in reverse order; every step runs even if an earlier one failed."""
        started = time.monotonic()
        problems = []
        steps: list[tuple[str, Callable[[], None]]] = [
            ("etlctl run", self._stop_batch),
            ("supervisord", self._stop_supervisors),
            ("Prefect server", self._stop_prefect),
            ("PostgreSQL", self._stop_postgres),
            ("network", self._delete_network),
            ("stray processes", self._kill_strays),
            ("temp dir", self._remove_root),
        ]
        for what, step in steps:
            try:
                step()
            except Exception as exc:
                problems.append(f"{what}: {exc}")
                self.say(f"teardown: {what} failed: {exc}")
        self.api.close()
        self.timings["teardown"] = time.monotonic() - started
        self.say(
            f"teardown done in {self.timings['teardown']:.1f} s" + (" with problems" if problems else "")
        )
        if problems and raise_errors:
            raise LabError("teardown: " + "; ".join(problems))

    def _stop_batch(self) -> None:
        if self._batch is None or not is_alive(self._batch):
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._batch.pid, signal.SIGTERM)
        try:
            self._batch.wait(timeout=15)
        except psutil.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._batch.pid, signal.SIGKILL)
            self._batch.wait(timeout=5)
        self.say("stopped etlctl run")

    def _stop_supervisors(self) -> None:
        for host, pid in list(self._supervised.items()):
            stop_supervisord(host, self.root / host, pid, self.base_env())
            del self._supervised[host]
            self.say(f"{host}: supervisord shut down with its workers")

    def _stop_prefect(self) -> None:
        if self._server_state is not None and stop_server(server_home(self._server_state)):
            self.say("stopped the Prefect server")

    def _stop_postgres(self) -> None:
        if self.cluster is not None and (self.cluster.root / "data" / "postmaster.pid").exists():
            self.cluster.stop()
            self.say("stopped PostgreSQL")

    def _delete_network(self) -> None:
        if self._network:
            for line in delete_network():
                self.say(line)
            self._network = False

    def _kill_strays(self) -> None:
        strays = marked_processes(self.lab_id)
        for proc in strays:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        if strays:
            psutil.wait_procs(strays, timeout=10)
            self.say(f"killed {len(strays)} stray processes: {[p.pid for p in strays]}")

    def _remove_root(self) -> None:
        if self.root is not None and self.root.exists():
            shutil.rmtree(self.root)
            self.say(f"removed {self.root}")

    # ---- output ----

    def say(self, message: str) -> None:
        self._say(f"[{time.monotonic() - self._started:6.1f} s] {message}")

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time what runs inside as `timings[name]`."""
        started = time.monotonic()
        try:
            yield
        finally:
            self.timings[name] = time.monotonic() - started
