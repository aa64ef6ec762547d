"""The drain, through the entry point etl-worker@.service runs and the way systemd runs it: a clean
environment from the env file, a session of its own, W+X memory refused (MemoryDenyWriteExecute),
and on stop SIGTERM to the main pid only (KillMode=mixed)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest

from flows.fleet.envfile import read_env_file
from flows.fleet.server import ServerHandle
from tests.every_table import every_table_differences
from tests.ops.conftest import (
    DRAIN_SECONDS,
    ETLCTL,
    LONG_TABLE,
    OpsFleet,
    Source,
    client,
    flow_run,
    make_fleet,
    workers_of,
)
from tests.polling import until

pytestmark = pytest.mark.prefect

NAME = "sd-01"
PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
# Linux >= 6.3 refuses W+X mappings for this process and its children from here on: the kernel's
# form of systemd's MemoryDenyWriteExecute=yes. Older kernels run the worker without it.
MDWE_EXEC = f"""
import ctypes, os, sys
if ctypes.CDLL(None, use_errno=True).prctl({PR_SET_MDWE}, {PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0) == 0:
    print("MDWE: on", file=sys.stderr, flush=True)
else:
    print("MDWE: unavailable:", os.strerror(ctypes.get_errno()), file=sys.stderr, flush=True)
os.execv(sys.argv[1], sys.argv[1:])
"""


@pytest.fixture(scope="module")
def fleet(
    prefect_server: ServerHandle, ops_source: Source, tmp_path_factory: pytest.TempPathFactory
) -> OpsFleet:
    fleet = make_fleet(prefect_server, ops_source, tmp_path_factory.mktemp("systemd-drain"), "ops-systemd")
    with fleet.env_file.open("a", encoding="utf-8") as out:
        out.write(f"ETLCTL_POOL={fleet.pool}\n")  # EnvironmentFile= puts it where --pool reads it
    return fleet


@pytest.fixture
def worker(fleet: OpsFleet) -> Iterator[psutil.Popen]:
    """`etlctl workers exec --name sd-01 --env-file F` with the environment a unit gives it."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(fleet.work),
        "PREFECT_HOME": str(fleet.work / "prefect-home"),  # Environment=PREFECT_HOME=%S/etlctl/...
        **read_env_file(fleet.env_file),  # EnvironmentFile=
    }
    log = (fleet.work / "sd-01.log").open("wb")
    command = [ETLCTL, "workers", "exec", "--name", NAME, "--env-file", str(fleet.env_file)]
    proc = psutil.Popen(
        [sys.executable, "-c", MDWE_EXEC, *command],
        env=env,
        cwd=fleet.work,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        family = [proc, *_children(proc)]
        for member in family:
            with contextlib.suppress(psutil.Error, ProcessLookupError):
                os.killpg(os.getpgid(member.pid), signal.SIGKILL)
        psutil.wait_procs(family, timeout=10)
        log.close()


def _children(proc: psutil.Process) -> list[psutil.Process]:
    with contextlib.suppress(psutil.Error):
        return proc.children(recursive=True)
    return []


def test_sigterm_to_the_main_pid_drains_the_worker(fleet: OpsFleet, worker: psutil.Popen) -> None:
    until(lambda: getattr(workers_of(fleet.pool).get(NAME), "status", None) == "ONLINE", 60, f"{NAME} ONLINE")
    assert worker.cmdline()[-2:] == ["--name", NAME]  # execs all the way: the unit's main pid is the worker

    with fleet.hold():  # the table stays Running until the worker has its SIGTERM
        first = fleet.run_table(LONG_TABLE)
        created = time.monotonic()

        def running_here() -> int | None:
            run = flow_run(first)
            pid = int(str(run.infrastructure_pid).rsplit(":", 1)[-1]) if run.infrastructure_pid else None
            mine = {c.pid for c in _children(worker)}
            return pid if run.state_type.value == "RUNNING" and pid in mine else None

        run_pid = until(running_here, 90, f"{LONG_TABLE} running on {NAME}")
        term_at = time.monotonic()
        os.kill(worker.pid, signal.SIGTERM)  # KillMode=mixed: the main process only
        second = fleet.run_table("customers")
        assert flow_run(first).state_type.value == "RUNNING" and worker.poll() is None

    def first_over() -> bool:
        assert flow_run(second).state_type.value == "SCHEDULED", "a draining worker claimed a new run"
        return flow_run(first).state.is_final()

    until(first_over, DRAIN_SECONDS, f"{LONG_TABLE} finishing during the drain")
    done_at = time.monotonic()
    code = worker.wait(timeout=DRAIN_SECONDS - (done_at - term_at))
    exit_at = time.monotonic()

    assert flow_run(first).state_type.value == "COMPLETED", flow_run(first).state
    assert code == 0
    assert flow_run(second).state_type.value == "SCHEDULED"
    assert not psutil.pid_exists(run_pid)
    # every table: the drained one equals its source, the one never claimed is not in the target
    assert every_table_differences(fleet.env["ETLCTL_CONFIG"], loaded=[LONG_TABLE]) == []
    print(
        f"\n{NAME}: run claimed {term_at - created:.1f} s after creation; after SIGTERM the run "
        f"completed in {done_at - term_at:.1f} s and the worker exited 0 in {exit_at - term_at:.1f} s "
        f"(grace {DRAIN_SECONDS} s); the run created after SIGTERM stayed Scheduled; "
        + (fleet.work / "sd-01.log").read_text(errors="replace").splitlines()[0]
    )
    with client() as c:
        c.delete_flow_run(second)
