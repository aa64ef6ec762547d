"""Fleet operations against the real fleet: the fleet-wide orchestrator lock, the dead-man's switch,
the machine inventory and its health verdicts, and draining a host from anywhere."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psutil
import pytest

from flows.fleet.processes import free_port
from tests.polling import until
from tests.prefect.conftest import ETLCTL

pytestmark = pytest.mark.prefect


def _machines(fleet) -> dict[str, dict]:
    proc = fleet.etlctl("machine", "ls", "--json", check=True)
    return {m["host"]: m for m in json.loads(proc.stdout)}


def test_two_runs_at_once_one_loads_and_the_other_exits_75(fleet):
    runs = [
        subprocess.Popen(
            [ETLCTL, "run", "measurements", "orders"],
            env=fleet.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outcomes = sorted((proc.wait(timeout=600), *proc.communicate()) for proc in runs)
    (ran, ran_out, _), (skipped, _, skipped_err) = outcomes
    assert (ran, skipped) == (0, 75), outcomes
    assert "2 of 2 tables succeeded" in ran_out
    lines = skipped_err.strip().splitlines()
    assert len(lines) == 1 and "skipped: another orchestrator run is active" in lines[0]


class _Pings:
    """A local dead-man's switch: records the path of every GET."""

    def __init__(self) -> None:
        seen: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append(self.path)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                return

        self.seen = seen
        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/ping/s3cret-token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def pings():
    switch = _Pings()
    yield switch
    switch.close()


def test_dead_mans_switch_is_pinged_at_start_and_with_the_exit_code(fleet, pings):
    proc = fleet.etlctl("run", "--ping-url", pings.url, "select")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert pings.seen == ["/ping/s3cret-token/start", "/ping/s3cret-token/0"]
    assert "s3cret-token" not in proc.stdout + proc.stderr


def test_dead_mans_switch_gets_every_other_exit_code(fleet, pings, tmp_path):
    """2, 3, 4 and 75 end the command before a batch starts: one ping each, with the real code."""
    from flows.lock import orchestrator_lock

    missing_source = tmp_path / "etlctl.toml"
    missing_source.write_text(
        f'[source]\nurl = "sqlite:///{tmp_path}/nowhere.db"\n[target]\nurl = "sqlite:///{tmp_path}/t.db"\n'
        "[tables]\ndiscover = true\n"
    )
    env_file = tmp_path / "etlctl.env"  # ETLCTL_PING_URL from --env-file, as cron uses it
    env_file.write_text(f"ETLCTL_PING_URL={pings.url}\nPREFECT_API_URL=http://127.0.0.1:{free_port()}/api\n")
    cases = {
        2: fleet.etlctl("run", "--ping-url", pings.url, "no_such_table"),
        3: fleet.etlctl("--config", str(missing_source), "run", "--ping-url", pings.url),
        4: fleet.etlctl("run", "--env-file", str(env_file)),
    }
    with orchestrator_lock():  # another orchestrator is running
        cases[75] = fleet.etlctl("run", "--ping-url", pings.url, "select")
    for code, proc in cases.items():
        assert proc.returncode == code, (code, proc.stdout + proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "s3cret-token" not in proc.stdout + proc.stderr
    assert pings.seen == [f"/ping/s3cret-token/{code}" for code in (2, 3, 4, 75)]
    single = fleet.etlctl("--config", str(missing_source), "run", "--single-flow")
    assert single.returncode == 3 and "source database" in single.stderr, single.stderr


def test_machine_ls_tells_healthy_from_down(fleet, tmp_path):
    fleet.etlctl(
        "machine",
        "register",
        "--host",
        "ghost",
        "--workers",
        "2",
        "--target-dir",
        str(tmp_path),
        "--no-start",
        check=True,
    )
    assert (tmp_path / "etlctl.conf").exists()
    env = {**fleet.env, "PREFECT_WORKER_HEARTBEAT_SECONDS": "5"}
    host = psutil.Popen(
        [ETLCTL, "workers", "start", "-n", "2", "--prefix", "ghost"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        until(lambda: _machines(fleet)["ghost"]["verdict"] == "healthy", 90, "ghost healthy")
        assert _machines(fleet)["ghost"]["live_workers"] == ["ghost-01", "ghost-02"]
        killed_at = time.monotonic()
        for proc in [host, *host.children(recursive=True)]:  # the host dies: every process at once
            os.killpg(os.getpgid(proc.pid), signal.SIGKILL)
        until(lambda: _machines(fleet)["ghost"]["verdict"] == "down", 90, "ghost down")
        print(f"ghost reported down {time.monotonic() - killed_at:.0f} s after kill -9")
    finally:
        host.kill()
        fleet.etlctl("machine", "deregister", "ghost", "--timeout", "5")
    assert "ghost" not in _machines(fleet)


def test_a_drained_host_claims_nothing_until_resumed(fleet, tmp_path):
    fleet.etlctl(
        "machine",
        "register",
        "--host",
        "e2e",
        "--workers",
        "3",
        "--target-dir",
        str(tmp_path),
        "--no-start",
        check=True,
    )
    try:
        assert fleet.etlctl("machine", "drain", "e2e", "--no-wait").returncode == 0
        assert _machines(fleet)["e2e"]["draining"] is True
        from prefect.deployments import run_deployment

        run = run_deployment(
            "process-table-etl/process-table-etl-deployment", parameters={"table": "currencies"}, timeout=0
        )
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            deadline = time.monotonic() + 12  # six worker polls at PREFECT_WORKER_QUERY_SECONDS=2
            while time.monotonic() < deadline:
                assert client.read_flow_run(run.id).state.is_scheduled()
                time.sleep(1)
            assert fleet.etlctl("machine", "resume", "e2e").returncode == 0
            until(
                lambda: client.read_flow_run(run.id).state.is_completed(),
                120,
                "the run completed after resume",
            )
    finally:
        fleet.etlctl("machine", "resume", "e2e")
        fleet.etlctl("machine", "deregister", "e2e", "--timeout", "60")


def test_run_works_under_crons_bare_environment(fleet, tmp_path):
    env_file = tmp_path / "etlctl.env"
    env_file.write_text(
        "\n".join(f"{k}={fleet.env[k]}" for k in ("PREFECT_API_URL", "ETLCTL_CONFIG", "ETLCTL_STATE_DIR"))
        + "\n"
    )
    bare = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LOGNAME": "root", "SHELL": "/bin/sh"}
    proc = subprocess.run(
        [ETLCTL, "run", "--env-file", str(env_file), "currencies", "categories"],
        env=bare,
        cwd="/",
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-1].endswith("2 tables loaded")
    assert "\x1b[" not in proc.stdout + proc.stderr  # no terminal colours in cron mail or journald
    assert any(" | INFO " in line and "tables:" in line for line in proc.stderr.splitlines())


def test_run_refuses_an_unknown_table_before_submitting_anything(fleet):
    proc = fleet.etlctl("run", "customers", "no_such_table")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "etlctl: error: table 'no_such_table' is not among the configured tables"
    assert proc.stdout == ""
