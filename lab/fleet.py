"""A fleet of hosts on this one machine, each in a network namespace: `make fleet-demo` and tests/netns.

    python -m lab.fleet              # build, run a batch, kill host w1 mid-run, report, tear down
    python -m lab.fleet --no-kill    # the same batch without the failure
    python -m lab.fleet --cleanup    # remove what a crashed lab left behind

Why namespaces: what the orchestrator's lost-host check guards against is a whole *host* dying, and
only separate hosts show it: workers named after their host, a PostgreSQL and a Prefect server reached
over a network, a host whose every process vanishes at once. Each host here is a network namespace
joined to the bridge `etllab0`, and its processes get a UTS namespace of their own so that the host
name (which names the workers) is the host's. The root namespace plays the cron host that runs
`etlctl run`. Killing every process of a namespace is the host losing power.

Needs root (`ip netns`, `unshare`), PostgreSQL's server binaries and the `postgres` user. Nothing is
routed beyond 10.213.0.0/24: the namespaces have no default route, the root namespace does not forward,
and IPv6 is off on every lab interface. The database password lives only in this process, the
environments of the processes it starts and the workers' env files (mode 0600), never in argv or logs.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil
from sqlalchemy import create_engine, select

from flows.errors import ConfigError
from flows.etl.fingerprint import fingerprint
from flows.etl.state import state_tables
from flows.fleet.environment import server_home
from flows.fleet.naming import host_of_worker, run_host
from flows.fleet.render import ops_dir
from flows.fleet.server import is_alive, stop_server
from flows.sample import build_sample, write_sample_config
from lab.postgres import PgCluster, bin_dir, start_cluster

T = TypeVar("T")

SUBNET = "10.213.0.0/24"
BRIDGE = "etllab0"
GATEWAY = "10.213.0.1"  # the root namespace's address on the bridge: the cron host
HOSTS = {"server": "10.213.0.10", "w1": "10.213.0.11", "w2": "10.213.0.12"}
WORKER_HOSTS = ("w1", "w2")
NAMESPACE_PREFIX = "etl-"
PG_PORT = 5432
API_PORT = 4200
API_URL = f"http://{HOSTS['server']}:{API_PORT}/api"
WORKERS_PER_HOST = 2
BIG_ROWS = 300_000  # the big table takes long enough on PostgreSQL that a host dies mid-batch
PASSWORD_ENV = "ETLCTL_LAB_PG_PASSWORD"
LAB_ENV = "ETLCTL_LAB_ID"  # in every process the lab starts: how teardown and --cleanup find strays
TMP_DIR = "/tmp"  # not $TMPDIR: every folder above PostgreSQL's must be searchable by postgres
TMP_PREFIX = "etllab-"
DRAIN_SECONDS = 30  # teardown stops idle workers; nothing should need the 600 s default
TABLE_FLOW = "process-table-etl"  # flows.table's flow name
RUN_TIMEOUT = 420.0
HEALTHY_TIMEOUT = 120.0
BIN = Path(sys.executable).parent
_PROXY_VARS = {"http_proxy", "https_proxy", "all_proxy", "no_proxy", "ftp_proxy"}
_SUPERVISOR_SECTIONS = ("supervisord", "unix_http_server", "rpcinterface:supervisor", "supervisorctl")


class LabError(RuntimeError):
    """The lab could not be built or the scenario could not finish; the message says where."""


Say = Callable[[str], None]


def namespace(host: str) -> str:
    return NAMESPACE_PREFIX + host


def on_host(host: str, command: Sequence[str | os.PathLike[str]]) -> list[str]:
    """`command` as a process of `host`: inside its network namespace, under its own host name.

    The host name comes through `sh`'s positional parameters, so nothing needs quoting.
    """
    return [
        "ip",
        "netns",
        "exec",
        namespace(host),
        "unshare",
        "--uts",
        "sh",
        "-c",
        'hostname "$0" && exec "$@"',
        host,
        *map(str, command),
    ]


def sh(
    command: Sequence[str | os.PathLike[str]], env: dict[str, str] | None = None, timeout: float = 180.0
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion; LabError with the last line of its output if it fails."""
    argv = [str(part) for part in command]
    try:
        done = subprocess.run(
            argv,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise LabError(f"`{' '.join(argv)}` did not finish within {timeout:.0f} s") from None
    if done.returncode != 0:
        detail = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        raise LabError(f"`{' '.join(argv)}` exited {done.returncode}: {detail}")
    return done


def until(check: Callable[[], T], timeout: float, what: str, interval: float = 0.5) -> T:
    """The first truthy result of `check`, polled against a deadline; LabError naming `what` after."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise LabError(f"no {what} after {timeout:.0f} s")
        time.sleep(interval)
    return result


# ---- the network ----------------------------------------------------------------------------------


def check_prerequisites() -> None:
    """Fail early and clearly where the lab cannot work, before anything is created."""
    if os.geteuid() != 0:
        raise LabError("the fleet lab needs root (ip netns, unshare, a bridge)")
    for tool in ("ip", "unshare", "hostname", "runuser"):
        if shutil.which(tool) is None:
            raise LabError(f"the fleet lab needs `{tool}`, which is not on PATH")
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        raise LabError(f"`ip netns` is unavailable here: {probe.stderr.strip() or probe.returncode}")
    try:
        bin_dir()
        pwd.getpwnam("postgres")
    except (ConfigError, KeyError):
        raise LabError("the fleet lab needs PostgreSQL's server binaries and the postgres user") from None
    leftovers = lab_namespaces() + ([BRIDGE] if link_exists(BRIDGE) else [])
    if leftovers:
        raise LabError(
            f"a fleet lab is already set up ({', '.join(leftovers)}): another one is running, or a "
            "crashed one left these; `python -m lab.fleet --cleanup` removes them"
        )


def lab_namespaces() -> list[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    wanted = {namespace(host) for host in HOSTS}
    return [line.split()[0] for line in listed.splitlines() if line.split() and line.split()[0] in wanted]


def link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", name], capture_output=True, check=False).returncode == 0


def create_network() -> None:
    """The bridge with the cron host's address, and one namespace per host joined to it by a veth pair.

    IPv6 is turned off on every lab interface before it comes up, so not even a link-local router
    solicitation leaves them; the namespaces get no default route, so nothing leaves the subnet.
    """
    sh(["ip", "link", "add", BRIDGE, "type", "bridge"])
    _no_ipv6(BRIDGE)
    sh(["ip", "addr", "add", f"{GATEWAY}/24", "dev", BRIDGE])
    sh(["ip", "link", "set", BRIDGE, "up"])
    for host, address in HOSTS.items():
        ns, veth = namespace(host), _veth(host)
        sh(["ip", "netns", "add", ns])
        for scope in ("all", "default"):
            sh(["ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{scope}.disable_ipv6=1"])
        sh(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns])
        _no_ipv6(veth)
        sh(["ip", "link", "set", veth, "master", BRIDGE, "up"])
        sh(["ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "eth0"])
        sh(["ip", "-n", ns, "link", "set", "eth0", "up"])
        sh(["ip", "-n", ns, "link", "set", "lo", "up"])


def delete_network() -> list[str]:
    """Kill whatever still runs in the lab's namespaces, then delete them and the bridge; what was done."""
    done = []
    for ns in lab_namespaces():
        killed = kill_namespace(ns)
        sh(["ip", "netns", "del", ns])
        done.append(f"deleted namespace {ns}" + (f" (killed {len(killed)} processes)" if killed else ""))
    for veth in map(_veth, HOSTS):  # each goes with its peer's namespace, but asynchronously
        subprocess.run(["ip", "link", "del", veth], capture_output=True, check=False)
        until(lambda veth=veth: not link_exists(veth), 10, f"{veth} gone", 0.1)
    if link_exists(BRIDGE):
        sh(["ip", "link", "del", BRIDGE])
        done.append(f"deleted bridge {BRIDGE}")
    return done


def namespace_pids(ns: str) -> list[int]:
    listed = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, check=False)
    return [int(pid) for pid in listed.stdout.split()] if listed.returncode == 0 else []


def kill_namespace(ns: str, timeout: float = 15.0) -> list[int]:
    """SIGKILL every process in `ns` until none is left: the host losing power.

    A process can fork between the listing and the kill, hence the loop; the killed pids are returned.
    """
    killed: list[int] = []
    deadline = time.monotonic() + timeout
    while pids := namespace_pids(ns):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        if time.monotonic() > deadline:
            raise LabError(f"processes {pids} in {ns} survive SIGKILL after {timeout:.0f} s")
        time.sleep(0.05)
    return sorted(set(killed))


def marked_processes(lab_id: str | None = None) -> list[psutil.Process]:
    """Processes started by a lab (`lab_id`, or any lab): they carry LAB_ENV in their environment."""
    found = []
    for proc in psutil.process_iter(["environ"]):
        value = (proc.info["environ"] or {}).get(LAB_ENV)
        if value is not None and (lab_id is None or value == lab_id) and proc.pid != os.getpid():
            found.append(proc)
    return found


def cleanup(say: Say = print) -> None:
    """`--cleanup`: what a crashed lab left behind, found by name and by the LAB_ENV mark.

    PostgreSQL is stopped by pg_ctl first: a SIGKILLed postmaster leaves its shared memory behind.
    """
    for data in Path(TMP_DIR).glob(f"{TMP_PREFIX}*/pg/data/postmaster.pid"):
        PgCluster(data.parent.parent, HOSTS["server"], PG_PORT, "").stop()
        say(f"stopped PostgreSQL in {data.parent}")
    for proc in marked_processes():
        with contextlib.suppress(psutil.Error):
            command = " ".join(proc.cmdline()[:3])
            proc.kill()
            say(f"killed pid {proc.pid} ({command})")
    for line in delete_network():
        say(line)
    for path in Path(TMP_DIR).glob(TMP_PREFIX + "*"):
        shutil.rmtree(path, ignore_errors=True)
        say(f"removed {path}")
    say("no fleet lab left")


def _veth(host: str) -> str:
    return f"etllab-{host}"  # interface names stop at 15 characters


def _no_ipv6(device: str) -> None:
    Path(f"/proc/sys/net/ipv6/conf/{device}/disable_ipv6").write_text("1\n")


# ---- PostgreSQL, inside the server's namespace ----------------------------------------------------


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
    import psycopg

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


# ---- the lab --------------------------------------------------------------------------------------


@dataclass
class LostRun:
    """A table run that was in progress on the killed host."""

    table: str
    state: str  # its final state
    crashed_after: float | None  # seconds from the kill until Prefect recorded it Crashed


@dataclass
class Report:
    exit_code: int | None
    seconds: float  # `etlctl run`, start to exit
    table_hosts: dict[str, str]  # table -> host whose worker loaded it (the target's _etlctl_runs.worker)
    mismatched: list[str]  # tables whose target differs from the source
    killed_host: str | None = None
    lost: list[LostRun] = field(default_factory=list)
    resubmitted_hosts: dict[str, str] = field(default_factory=dict)  # lost table -> host of its rerun
    recovered_after: float | None = None  # kill -> the last rerun of a lost table Completed
    verdicts: dict[str, str] = field(default_factory=dict)  # `etlctl machine ls` afterwards
    output: str = ""  # the end of `etlctl run`'s output

    @property
    def crashed_after(self) -> float | None:
        times = [lost.crashed_after for lost in self.lost if lost.crashed_after is not None]
        return max(times) if times else None

    @property
    def ok(self) -> bool:
        recovered = all(host != self.killed_host for host in self.resubmitted_hosts.values())
        complete = set(self.resubmitted_hosts) == {lost.table for lost in self.lost}
        return self.exit_code == 0 and not self.mismatched and recovered and complete

    def lines(self) -> list[str]:
        by_host: dict[str, list[str]] = {}
        for table, host in sorted(self.table_hosts.items()):
            by_host.setdefault(host, []).append(table)
        lines = [f"etlctl run: exit {self.exit_code} after {self.seconds:.1f} s"]
        lines += [f"  loaded on {host}: {', '.join(tables)}" for host, tables in sorted(by_host.items())]
        if self.killed_host:
            for lost in self.lost:
                rerun = self.resubmitted_hosts.get(lost.table, "nowhere")
                crashed = f"{lost.crashed_after:.1f} s" if lost.crashed_after is not None else "never"
                lines.append(
                    f"  lost on {self.killed_host}: {lost.table} ({lost.state} {crashed} after the kill), "
                    f"rerun on {rerun}"
                )
            if not self.lost:
                lines.append(f"  nothing was in progress on {self.killed_host} when it was killed")
            lines.append(f"  kill -> lost runs marked Crashed: {_seconds(self.crashed_after)}")
            lines.append(f"  kill -> resubmitted runs Completed: {_seconds(self.recovered_after)}")
        lines.append(f"  hosts afterwards: {', '.join(f'{h} {v}' for h, v in sorted(self.verdicts.items()))}")
        equal = "every table" if not self.mismatched else "NOT " + ", ".join(self.mismatched)
        lines.append(f"  target equals source: {equal}")
        return lines


class Lab:
    """The fleet: build() it, run() the scenario, close() it (or use it as a context manager).

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
        self._network = False
        self.config: Path | None = None
        self._server_state: Path | None = None
        self._supervised: dict[str, int] = {}  # host -> supervisord pid
        self._run: psutil.Popen | None = None
        self._api = httpx.Client(base_url=API_URL, timeout=10.0, trust_env=False)
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
        with self._step("network"):
            self._network = True
            create_network()
            self.say(
                f"bridge {BRIDGE} {GATEWAY}/24; " + ", ".join(f"{namespace(h)} {a}" for h, a in HOSTS.items())
            )
        with self._step("postgresql"):
            self._start_postgres()
        with self._step("sample source"):
            self.tables = build_sample(self.cluster.url("source"), big_rows=self.big_rows)
            self.say(f"sample source: {len(self.tables)} tables, {self.big_rows} rows in the biggest")
        with self._step("prefect server"):
            self._start_prefect()
        with self._step("setup + deploy"):
            (self.root / "cron").mkdir()
            self._write_config()
            for command in ("setup", "deploy"):
                sh([BIN / "etlctl", command], env=self.client_env(self.root / "cron"))
            self.say("etlctl setup + deploy from the cron host (root namespace)")
        with self._step("worker hosts"):
            for host in WORKER_HOSTS:
                self._start_worker_host(host)
            until(self._all_healthy, HEALTHY_TIMEOUT, "healthy w1 and w2 in `etlctl machine ls`", 2.0)
            self.say("etlctl machine ls: " + ", ".join(f"{h} healthy" for h in WORKER_HOSTS))

    def _start_postgres(self) -> None:
        root = self.root / "pg"
        env = {**self.base_env(), PASSWORD_ENV: self.password}
        sh(on_host("server", [sys.executable, "-m", "lab.fleet", "--serve-postgres", root]), env=env)
        self.cluster = PgCluster(root, HOSTS["server"], PG_PORT, self.password)
        until(lambda: _accepts(self.cluster), 30, f"PostgreSQL accepting {SUBNET} on {HOSTS['server']}")
        for database in ("prefect", "source", "target"):
            self.cluster.create_database(database)
        self.say(f"PostgreSQL on server {HOSTS['server']}:{PG_PORT}: databases prefect, source, target")

    def _start_prefect(self) -> None:
        self._server_state = self.root / "server"
        env = {
            **self.base_env(),
            "ETLCTL_STATE_DIR": str(self._server_state),
            # the option's environment variable: a URL with a password never goes on a command line
            "ETLCTL_SERVER_DATABASE_URL": self.cluster.url("prefect", "asyncpg").render_as_string(
                hide_password=False
            ),
        }
        command = [BIN / "etlctl", "server", "start", "--host", HOSTS["server"], "--port", str(API_PORT)]
        sh(on_host("server", [*command, "--no-ui"]), env=env, timeout=150)
        self._api.get("/health").raise_for_status()  # and from the cron host, across the bridge
        self.say(f"Prefect server on server, PostgreSQL database: {API_URL}")

    def _write_config(self) -> None:
        def url(database: str) -> str:
            return f"postgresql+psycopg://etl:${{{PASSWORD_ENV}}}@{HOSTS['server']}:{PG_PORT}/{database}"

        self.config = write_sample_config(self.root / "etlctl.toml", url("source"), url("target"))

    def _start_worker_host(self, host: str) -> None:
        """Its own supervisord, then `etlctl machine register` on the host itself, as an operator would."""
        home = self.root / host
        (home / "logs").mkdir(parents=True)
        conf_d = home / "conf.d"
        conf_d.mkdir()
        env_file = home / "etlctl.env"
        env_file.touch(mode=0o600)
        env_file.write_text(
            "".join(f"{key}={value}\n" for key, value in self.worker_env().items()), encoding="utf-8"
        )
        conf = home / "supervisord.conf"
        conf.write_text(supervisord_main_config(home, conf_d), encoding="utf-8")
        sh(on_host(host, [BIN / "supervisord", "-c", conf]), env=self.base_env())
        pid_file = home / "supervisord.pid"
        self._supervised[host] = int(until(lambda: _read(pid_file), 20, f"supervisord pid file on {host}"))
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
            conf_d,
            "--supervisor-config",
            conf,
            "--env-file",
            env_file,
            "--user",
            "-",
            "--home",
            home,
        ]
        sh(on_host(host, register), env=self.client_env(home))
        self.say(
            f"{host} {HOSTS[host]}: supervisord + `etlctl machine register --workers {WORKERS_PER_HOST}`"
        )

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
            "PREFECT_API_URL": API_URL,
            "ETLCTL_CONFIG": str(self.config),
            PASSWORD_ENV: self.password,
            "ETLCTL_DRAIN_SECONDS": str(DRAIN_SECONDS),
            "DO_NOT_TRACK": "1",
        }

    def client_env(self, home: Path) -> dict[str, str]:
        """An etlctl client (setup, deploy, run, machine ...) keeping its Prefect files under `home`."""
        return {
            **self.base_env(),
            **self.worker_env(),
            "PREFECT_HOME": str(home / "prefect-home"),
            "ETLCTL_STATE_DIR": str(home / "state"),
        }

    # ---- the scenario ----

    def machines(self) -> dict[str, dict[str, Any]]:
        """`etlctl machine ls --json` from the cron host: host -> its record and verdict."""
        out = sh([BIN / "etlctl", "machine", "ls", "--json"], env=self.client_env(self.root / "cron"))
        return {entry["host"]: entry for entry in json.loads(out.stdout)}

    def _all_healthy(self) -> bool:
        found = self.machines()
        return all(found.get(host, {}).get("verdict") == "healthy" for host in WORKER_HOSTS)

    def run(self, kill_host: str | None = None, timeout: float = RUN_TIMEOUT) -> Report:
        """`etlctl run` from the cron host; with `kill_host`, that host dies in the middle of the batch.

        The kill waits until the host has finished a table and has two more in progress, so the
        report shows it both doing work and losing work.
        """
        if kill_host is not None and kill_host not in WORKER_HOSTS:
            raise LabError(f"{kill_host!r} is not a worker host ({', '.join(WORKER_HOSTS)})")
        self.say("etlctl run (cron host)" + (f"; {kill_host} dies mid-batch" if kill_host else ""))
        log_path = self.root / "etlctl-run.log"
        with log_path.open("wb") as log:
            self._run = psutil.Popen(
                [str(BIN / "etlctl"), "run"],
                env=self.client_env(self.root / "cron"),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started = time.monotonic()
        killed_at = None
        in_progress: list[dict[str, Any]] = []
        if kill_host is not None:
            until(
                lambda: self._ready_to_kill(kill_host),
                timeout,
                f"two tables in progress on {kill_host}",
                0.25,
            )
            killed_at = time.time()
            killed = kill_namespace(namespace(kill_host))
            self._supervised.pop(kill_host, None)
            in_progress = [r for r in self.table_runs() if _host_of(r) == kill_host and not _final(r)]
            self.say(
                f"kill -9 of every process on {kill_host} ({len(killed)} processes) at "
                f"{time.monotonic() - started:.1f} s; in progress there: "
                + (", ".join(f"{r['name']} ({r['state_type']})" for r in in_progress) or "nothing")
            )
        try:
            exit_code = self._run.wait(timeout=max(1.0, timeout - (time.monotonic() - started)))
        except psutil.TimeoutExpired:
            raise LabError(
                f"`etlctl run` still going after {timeout:.0f} s; table runs not finished: "
                f"{self._unfinished()}; end of its output:\n{_tail(log_path, 15)}"
            ) from None
        seconds = self.timings["etlctl run"] = time.monotonic() - started
        self.say(f"etlctl run exited {exit_code} after {seconds:.1f} s")
        with self._step("report"):
            report = self._report(exit_code, seconds, kill_host, killed_at, in_progress, _tail(log_path))
        return report

    def _ready_to_kill(self, host: str) -> bool:
        """The host has finished a table, is running one, and has a second one claimed or running.

        A small table runs for about a second, which a kill can miss; with both of the host's workers
        busy, at least one table is certainly lost. A batch that ends first is an error, not a wait.
        """
        if not is_alive(self._run):
            raise LabError(f"the batch ended before {host} was busy enough to kill")
        runs = [r for r in self.table_runs() if _host_of(r) == host]
        states = [r["state_type"] for r in runs]
        in_progress = sum(1 for r in runs if not _final(r) and r["state_type"] != "SCHEDULED")
        return "COMPLETED" in states and "RUNNING" in states and in_progress >= 2

    def _unfinished(self) -> str:
        try:
            runs = [r for r in self.table_runs() if not _final(r)]
        except httpx.HTTPError as exc:
            return f"unknown ({exc})"
        return ", ".join(f"{r['name']} ({r['state_type']} on {_host_of(r) or '?'})" for r in runs) or "none"

    def table_runs(self) -> list[dict[str, Any]]:
        """Every table flow run on the server, oldest first (the server is the lab's own: one batch)."""
        body = {"flows": {"name": {"any_": [TABLE_FLOW]}}, "sort": "EXPECTED_START_TIME_ASC", "limit": 200}
        response = self._api.post("/flow_runs/filter", json=body)
        response.raise_for_status()
        return response.json()

    def state_history(self, run_id: str) -> list[dict[str, Any]]:
        response = self._api.get("/flow_run_states/", params={"flow_run_id": run_id})
        response.raise_for_status()
        return response.json()

    def _report(
        self,
        exit_code: int,
        seconds: float,
        kill_host: str | None,
        killed_at: float | None,
        in_progress: list[dict[str, Any]],
        output: str,
    ) -> Report:
        report = Report(exit_code, seconds, self.target_hosts(), self.mismatched_tables(), kill_host)
        report.output = output
        report.verdicts = {host: entry["verdict"] for host, entry in self.machines().items()}
        if kill_host is None or killed_at is None:
            return report
        runs = self.table_runs()
        by_id = {r["id"]: r for r in runs}
        for lost in in_progress:
            final = by_id[lost["id"]]
            crashed = [s for s in self.state_history(lost["id"]) if s["type"] == "CRASHED"]
            crashed_after = _timestamp(crashed[0]["timestamp"]) - killed_at if crashed else None
            report.lost.append(LostRun(lost["name"], final["state_name"], crashed_after))
            reruns = [
                r
                for r in runs
                if r["name"] == lost["name"]
                and r["id"] != lost["id"]
                and _timestamp(r["created"]) > killed_at
            ]
            done = [r for r in reruns if r["state_type"] == "COMPLETED"]
            if done:
                report.resubmitted_hosts[lost["name"]] = _host_of(done[-1]) or "?"
                finished = _timestamp(done[-1]["end_time"]) - killed_at
                report.recovered_after = max(report.recovered_after or 0.0, finished)
        return report

    def target_hosts(self) -> dict[str, str]:
        """Table -> host of the worker that loaded it last, from the target's own run history."""
        _, runs = state_tables(None)
        engine = create_engine(self.cluster.url("target"))
        try:
            with engine.connect() as conn:
                rows = conn.execute(select(runs.c.table_name, runs.c.worker).order_by(runs.c.id)).all()
        finally:
            engine.dispose()
        return {table: host_of_worker(worker) for table, worker in rows if worker}

    def mismatched_tables(self) -> list[str]:
        source = create_engine(self.cluster.url("source"))
        target = create_engine(self.cluster.url("target"))
        try:
            return [t for t in self.tables if not _same(source, target, t)]
        finally:
            source.dispose()
            target.dispose()

    # ---- teardown ----

    def close(self, raise_errors: bool = True) -> None:
        """Undo everything in reverse order; every step runs even if an earlier one failed."""
        started = time.monotonic()
        problems = []
        steps: list[tuple[str, Callable[[], None]]] = [
            ("etlctl run", self._stop_run),
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
        self._api.close()
        self.timings["teardown"] = time.monotonic() - started
        self.say(
            f"teardown done in {self.timings['teardown']:.1f} s" + (" with problems" if problems else "")
        )
        if problems and raise_errors:
            raise LabError("teardown: " + "; ".join(problems))

    def _stop_run(self) -> None:
        if self._run is None or not is_alive(self._run):
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._run.pid, signal.SIGTERM)
        try:
            self._run.wait(timeout=15)
        except psutil.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._run.pid, signal.SIGKILL)
            self._run.wait(timeout=5)
        self.say("stopped etlctl run")

    def _stop_supervisors(self) -> None:
        for host, pid in list(self._supervised.items()):
            conf = self.root / host / "supervisord.conf"
            with contextlib.suppress(LabError):
                sh(on_host(host, [BIN / "supervisorctl", "-c", conf, "shutdown"]), env=self.base_env())
            until(
                lambda pid=pid: not psutil.pid_exists(pid),
                DRAIN_SECONDS + 30,
                f"supervisord on {host} exiting",
            )
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
    def _step(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.timings[name] = time.monotonic() - started


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


def _host_of(flow_run: dict[str, Any]) -> str | None:
    return run_host(flow_run.get("labels"))


def _final(flow_run: dict[str, Any]) -> bool:
    return flow_run["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


def _timestamp(value: str) -> float:
    return dt.datetime.fromisoformat(value).timestamp()


def _same(source: Any, target: Any, table: str) -> bool:
    try:
        return fingerprint(source, table) == fingerprint(target, table)
    except Exception:  # a table missing from the target is a mismatch, not a crash of the report
        return False


def _read(path: Path) -> str:
    with contextlib.suppress(OSError):
        return path.read_text().strip()
    return ""


def _tail(path: Path, lines: int = 40) -> str:
    text = _read(path)
    return "\n".join(text.splitlines()[-lines:])


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} s"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.fleet", description=__doc__.split("\n")[0])
    parser.add_argument("--kill", default="w1", choices=WORKER_HOSTS, help="host to kill mid-batch (w1)")
    parser.add_argument("--no-kill", action="store_true", help="run the batch without killing a host")
    parser.add_argument(
        "--big-rows", type=int, default=BIG_ROWS, help=f"rows in the biggest table ({BIG_ROWS})"
    )
    parser.add_argument("--cleanup", action="store_true", help="remove what a crashed lab left behind")
    parser.add_argument("--serve-postgres", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_postgres:
        serve_postgres(args.serve_postgres)
        return 0

    def say(line: str) -> None:
        print(line, flush=True)

    # SIGTERM (a CI timeout, `kill`) unwinds like Ctrl+C, so the teardown still runs
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        if args.cleanup:
            check = subprocess.run(["ip", "netns", "list"], capture_output=True, check=False)
            if check.returncode != 0:
                raise LabError("`ip netns` is unavailable here")
            cleanup(say)
            return 0
        with Lab(args.big_rows, say) as lab:
            lab.build()
            report = lab.run(None if args.no_kill else args.kill)
    except LabError as exc:
        say(f"fleet lab: error: {exc}")
        return 1
    say("")
    for line in report.lines():
        say(line)
    say("timings: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in lab.timings.items()))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
