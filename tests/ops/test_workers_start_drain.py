"""`etlctl workers start` at a terminal: the first Ctrl+C lets the running table finish and claims
nothing new, then the command exits 0 with no process left behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

import psutil
import pytest

from flows.fleet.server import ServerHandle
from tests.every_table import every_table_differences
from tests.ops.conftest import ETLCTL, LONG_TABLE, OpsFleet, Source, client, flow_run, make_fleet, workers_of
from tests.polling import until

pytestmark = pytest.mark.prefect

PREFIX = "wsd"
GRACE = 600


@pytest.fixture(scope="module")
def fleet(
    prefect_server: ServerHandle, ops_source: Source, tmp_path_factory: pytest.TempPathFactory
) -> OpsFleet:
    return make_fleet(prefect_server, ops_source, tmp_path_factory.mktemp("workers-drain"), "ops-wstart")


def _family(proc: psutil.Process) -> list[psutil.Process]:
    with contextlib.suppress(psutil.Error):
        return [proc, *proc.children(recursive=True)]
    return [proc]


def test_first_ctrl_c_lets_the_running_table_finish_and_claims_nothing_new(fleet: OpsFleet) -> None:
    output = fleet.work / "workers-start.out"
    # The drain ends when the table does: a grace far longer than the table, whatever the load.
    env = {**fleet.env, "ETLCTL_DRAIN_SECONDS": str(GRACE), "PREFECT_WORKER_QUERY_SECONDS": "2"}
    # A session of its own: SIGINT to its group is what Ctrl+C in its terminal sends.
    supervisor = psutil.Popen(
        [ETLCTL, "workers", "start", "-n", "2", "--prefix", PREFIX],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=output.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    second = None
    seen: list[psutil.Process] = []
    try:
        names = {f"{PREFIX}-01", f"{PREFIX}-02"}
        until(
            lambda: {n for n, w in workers_of(fleet.pool).items() if w.status == "ONLINE"} >= names,
            90,
            "two online workers",
        )
        with fleet.hold():  # the table stays Running until the drain has begun
            first = fleet.run_table(LONG_TABLE)
            until(lambda: flow_run(first).state_type.value == "RUNNING", 90, f"{LONG_TABLE} running")
            seen = _family(supervisor)

            os.killpg(supervisor.pid, signal.SIGINT)
            line = "draining: 1 table running; the workers claim no new ones"
            until(lambda: line in output.read_text(), 15, "the drain line")
            second = fleet.run_table("customers")
            assert flow_run(first).state_type.value == "RUNNING" and supervisor.poll() is None

        def first_over() -> bool:
            assert flow_run(second).state_type.value == "SCHEDULED", "a draining worker claimed a new run"
            return flow_run(first).state.is_final()

        until(first_over, GRACE, f"{LONG_TABLE} finishing during the drain")
        drained_at = time.monotonic()
        assert supervisor.wait(timeout=60) == 0
        print(f"\nsupervisor exited {time.monotonic() - drained_at:.1f} s after the table finished")
        assert flow_run(first).state_type.value == "COMPLETED", flow_run(first).state
        # every table: the drained one equals its source, the one never claimed is not in the target
        assert every_table_differences(fleet.env["ETLCTL_CONFIG"], loaded=[LONG_TABLE]) == []
        assert flow_run(second).state_type.value == "SCHEDULED"
        text = output.read_text()
        assert "drained: every worker finished its tables and stopped" in text
        assert "stopping now" not in text
        assert not [(p.pid, p.name()) for p in seen if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    finally:
        if supervisor.poll() is None:
            for member in _family(supervisor):
                with contextlib.suppress(psutil.Error, ProcessLookupError):
                    os.killpg(os.getpgid(member.pid), signal.SIGKILL)
            supervisor.wait()
        if second is not None:
            with client() as c:
                c.delete_flow_run(second)
