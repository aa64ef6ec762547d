"""ops/supervisord.conf run for real: three named workers kept alive, a stop that waits for the table
in progress, and a shutdown that leaves nothing behind. Tests run in file order on one supervisord."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from flows.fleet.server import ServerHandle
from tests.every_table import every_table_differences
from tests.ops.conftest import ETLCTL, LONG_TABLE, OPS, OpsFleet, Source, flow_run, make_fleet, workers_of
from tests.polling import until

pytestmark = pytest.mark.prefect

CONF = OPS / "supervisord.conf"
SUPERVISORD = str(Path(ETLCTL).with_name("supervisord"))
SUPERVISORCTL = str(Path(ETLCTL).with_name("supervisorctl"))
HOST = platform.node()  # supervisord's %(host_node_name)s
NAMES = [f"{HOST}-{i:02d}" for i in (1, 2, 3)]
DRAIN_LIMIT = 300  # seconds `supervisorctl stop` may block: the table loads in seconds once released
_STATUS = re.compile(r"^etl-worker:(\S+)\s+(\S+)(?:\s+pid (\d+))?", re.MULTILINE)


@dataclass
class Supervised:
    fleet: OpsFleet
    home: Path
    env: dict[str, str]
    pid: int

    def ctl(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [SUPERVISORCTL, "-c", str(CONF), *args],
            env={"PATH": os.environ["PATH"], "ETLCTL_HOME": str(self.home)},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def status(self) -> dict[str, tuple[str, int | None]]:
        """Process name -> (state, pid), from `supervisorctl status`."""
        out = self.ctl("status").stdout
        return {name: (state, int(pid) if pid else None) for name, state, pid in _STATUS.findall(out)}

    def running(self) -> dict[str, int]:
        return {name: pid for name, (state, pid) in self.status().items() if state == "RUNNING" and pid}

    def log(self) -> str:
        return (self.home / "logs" / "supervisord.log").read_text(encoding="utf-8", errors="replace")


def leftovers(home: Path, pid: int, names: list[str] | None = None) -> list[psutil.Process]:
    """supervisord (`pid`) and every process it started: the workers and their flow runs all inherit
    ETLCTL_HOME from it. With `names`, only those of these workers (by command line or by the
    ETLCTL_WORKER_NAME a flow run inherits). Names alone would not do: other supervisords on this
    machine may run workers called <host>-01 too, and none of theirs may be touched.
    """
    found = []
    for proc in psutil.process_iter(["cmdline", "environ"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        environ = proc.info["environ"] or {}
        ours = environ.get("ETLCTL_HOME") == str(home) or str(home) in cmdline
        named = (
            names is None or environ.get("ETLCTL_WORKER_NAME") in names or any(n in cmdline for n in names)
        )
        if proc.pid == pid or (ours and named):
            found.append(proc)
    return [p for p in found if p.pid != os.getpid()]


@pytest.fixture(scope="module")
def supervised(
    prefect_server: ServerHandle, ops_source: Source, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Supervised]:
    fleet = make_fleet(prefect_server, ops_source, tmp_path_factory.mktemp("supervisord"), "ops-supervisord")
    # a short home: the control socket's path must stay under ~107 bytes
    home = Path(tempfile.mkdtemp(prefix="etlsv-", dir="/tmp"))
    (home / "logs").mkdir()
    # Only what the banner asks for, plus the pool; PREFECT_API_URL reaches workers via the env file.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "ETLCTL_"))}
    env.update(
        ETLCTL_WORKERS="3",
        ETLCTL_HOME=str(home),
        ETLCTL_BIN=ETLCTL,
        ETLCTL_ENV_FILE=str(fleet.env_file),
        ETLCTL_POOL=fleet.pool,
    )
    started = subprocess.run([SUPERVISORD, "-c", str(CONF)], env=env, capture_output=True, text=True)
    assert started.returncode == 0, started.stdout + started.stderr
    pid = int(until(lambda: _read(home / "supervisord.pid"), 10, "supervisord pid file"))
    supervised = Supervised(fleet, home, env, pid)
    try:
        yield supervised
    finally:
        _shut_down(supervised)
        shutil.rmtree(home, ignore_errors=True)


def _read(path: Path) -> str:
    with contextlib.suppress(OSError):
        return path.read_text().strip()
    return ""


def _shut_down(supervised: Supervised) -> None:
    """Even after a failure: supervisorctl shutdown, then signals for anything that outlives it."""
    if psutil.pid_exists(supervised.pid):
        supervised.ctl("shutdown", timeout=30)
        with contextlib.suppress(psutil.Error):
            psutil.Process(supervised.pid).wait(timeout=180)
    for proc in leftovers(supervised.home, supervised.pid):
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            os.killpg(os.getpgid(proc.pid), signal.SIGKILL)


def test_three_named_workers_run_and_are_online_in_prefect(supervised: Supervised) -> None:
    running = until(lambda: r if len(r := supervised.running()) == 3 else None, 60, "3 RUNNING")
    assert sorted(running) == NAMES
    assert set(running.values()) <= {p.pid for p in leftovers(supervised.home, supervised.pid)}
    for name, pid in running.items():
        assert psutil.Process(pid).cmdline()[-2:] == ["--name", name]  # exec'd: the pid is the worker
    pool = supervised.fleet.pool
    until(
        lambda: {n for n, w in workers_of(pool).items() if w.status == "ONLINE"} >= set(NAMES),
        60,
        "three ONLINE workers in Prefect",
    )


def test_a_killed_worker_comes_back_under_its_name_with_a_fresh_heartbeat(supervised: Supervised) -> None:
    name = NAMES[1]
    old = supervised.running()[name]
    killed_at = time.time()
    os.kill(old, signal.SIGKILL)

    def fresh() -> float | None:
        beat = workers_of(supervised.fleet.pool)[name].last_heartbeat_time
        return beat.timestamp() if beat and beat.timestamp() > killed_at else None

    beat = until(fresh, 120, f"a heartbeat from the restarted {name}")  # a loaded host: imports take 20 s
    new = until(lambda: supervised.running().get(name) not in (None, old), 60, f"{name} RUNNING again")
    new_pid = supervised.running()[name]
    assert new and new_pid != old
    assert psutil.Process(new_pid).cmdline()[-2:] == ["--name", name]
    print(f"\n{name}: kill -9 to a fresh Prefect heartbeat under the same name: {beat - killed_at:.1f} s")


def test_stop_waits_for_the_running_table_then_the_worker_is_gone(supervised: Supervised) -> None:
    fleet = supervised.fleet
    until(lambda: len(supervised.running()) == 3, 60, "3 RUNNING")
    with ThreadPoolExecutor(1) as background, fleet.hold():  # Running until the stop is under way
        run_id = fleet.run_table(LONG_TABLE)
        created = time.monotonic()
        name, worker_pid, run_pid = until(lambda: _claimed(supervised, run_id), 90, f"{LONG_TABLE} running")
        stop_at = time.monotonic()
        stopping = background.submit(supervised.ctl, "stop", f"etl-worker:{name}", timeout=DRAIN_LIMIT)
        until(lambda: supervised.status()[name][0] == "STOPPING", 60, f"{name} STOPPING")
        assert flow_run(run_id).state_type.value == "RUNNING" and not stopping.done()
    stopped = stopping.result()
    returned = time.monotonic()
    assert stopped.returncode == 0 and "stopped" in stopped.stdout, stopped.stdout + stopped.stderr

    final = flow_run(run_id)  # read once `stop` has returned: the run must already be over
    assert final.state_type.value == "COMPLETED", final.state
    # every table: the drained one equals its source, the one never claimed is not in the target
    assert every_table_differences(fleet.env["ETLCTL_CONFIG"], loaded=[LONG_TABLE]) == []
    assert not psutil.pid_exists(worker_pid) and not psutil.pid_exists(run_pid)
    assert leftovers(supervised.home, -1, [name]) == []
    assert supervised.status()[name][0] == "STOPPED"
    assert re.search(rf"stopped: {re.escape(name)} \(exit status 0\)", supervised.log())
    print(
        f"\n{name}: run claimed {stop_at - created:.1f} s after creation; `supervisorctl stop` returned "
        f"{returned - stop_at:.1f} s later, after the run ended Completed "
        f"({final.end_time.timestamp() - final.start_time.timestamp():.1f} s of run)"
    )


def test_rolling_restart_restarts_every_worker_and_waits_for_the_busy_one(
    supervised: Supervised, tmp_path: Path
) -> None:
    fleet = supervised.fleet
    assert supervised.ctl("start", "etl-worker:*").returncode == 0
    before = until(lambda: (r := supervised.running()) and len(r) == 3 and r, 60, "3 RUNNING")
    env = {**fleet.env, "ETLCTL_HOME": str(supervised.home)}
    register = [
        ETLCTL,
        "machine",
        "register",
        "--host",
        HOST,
        "--workers",
        "3",
        "--target-dir",
        str(tmp_path),
    ]
    done = subprocess.run([*register, "--no-start"], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    try:
        # every worker busy, so the first one the restart reaches is certainly still loading
        with fleet.hold():  # every run stays Running until the restart waits for the first worker
            run_ids = [fleet.run_table(LONG_TABLE) for _ in NAMES]
            claimed = until(
                lambda: (c := [_claimed(supervised, r) for r in run_ids]) and all(c) and c,
                120,
                f"{LONG_TABLE} running on all three workers",
            )
            assert sorted(name for name, _, _ in claimed) == NAMES
            output = tmp_path / "restart.out"
            restart = subprocess.Popen(
                [ETLCTL, "machine", "restart", "--supervisor-config", str(CONF)],
                env=env,
                stdout=output.open("wb"),
                stderr=subprocess.STDOUT,
            )
            waiting = f"{NAMES[0]}: waiting for its flow run to finish"
            until(lambda: waiting in output.read_text(), 120, "the restart waiting for the busy worker")
            assert [flow_run(r).state_type.value for r in run_ids] == ["RUNNING"] * len(run_ids)
        assert restart.wait(timeout=DRAIN_LIMIT) == 0, output.read_text()
        assert [flow_run(r).state_type.value for r in run_ids] == ["COMPLETED"] * len(run_ids)
        after = supervised.running()
        assert sorted(after) == sorted(before) and all(after[n] != before[n] for n in before)
    finally:
        subprocess.run([ETLCTL, "machine", "deregister", HOST, "--timeout", "60"], env=env, check=False)


def _claimed(supervised: Supervised, run_id: str) -> tuple[str, int, int] | None:
    """(worker name, worker pid, flow-run pid) once the run is Running under one of our workers."""
    run = flow_run(run_id)
    if run.state_type.value != "RUNNING" or not run.infrastructure_pid:
        return None
    run_pid = int(str(run.infrastructure_pid).rsplit(":", 1)[-1])
    for name, pid in supervised.running().items():
        with contextlib.suppress(psutil.Error):
            if run_pid in {c.pid for c in psutil.Process(pid).children(recursive=True)}:
                return name, pid, run_pid
    return None


def test_shutdown_leaves_no_process_behind(supervised: Supervised) -> None:
    shut = supervised.ctl("shutdown")
    assert shut.returncode == 0, shut.stdout + shut.stderr
    until(lambda: not psutil.pid_exists(supervised.pid), 120, "supervisord exiting")
    assert leftovers(supervised.home, supervised.pid) == []
    assert not (supervised.home / "supervisor.sock").exists()
