"""A fleet with Prefect's basic auth on, every part started by hand from one env file, under umask 000:
a client without the string is refused, the fleet works with it, the string shows up nowhere it
should not, and every file the commands create is private.

One server of its own (auth on), one worker under `etlctl workers start`, one `etlctl run` of one
table with its two cleanups.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import psutil
import pytest

from flows.demo.sample import build_sample, write_sample_config
from flows.fleet.auth import exposure_warning
from flows.fleet.server import ServerHandle, read_server_state
from tests.polling import until

ETLCTL = str(Path(sys.executable).with_name("etlctl"))
UMASK = 0o000  # the worst a user can have: every file etlctl does not protect itself is 0666


def _bare_env(tmp_path: Path) -> dict[str, str]:
    """No PREFECT_* of the test session: the env file is the only source of the API and the string."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(ETLCTL_STATE_DIR=str(tmp_path / "state"), PREFECT_HOME=str(tmp_path / "client-home"))
    return env


def _etlctl(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ETLCTL, *args], env=env, capture_output=True, text=True, timeout=timeout, umask=UMASK, check=False
    )


def _api(url: str, path: str, auth: str | None) -> httpx.Response:
    headers = {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()} if auth else {}
    return httpx.post(f"{url}{path}", json={}, headers=headers, timeout=10, trust_env=False)


def _online(url: str, auth: str) -> set[str]:
    workers = _api(url, "/work_pools/etl-tables/workers/filter", auth)
    return (
        {w["name"] for w in workers.json() if w["status"] == "ONLINE"}
        if workers.status_code == 200
        else set()
    )


def _watch_cmdlines(seen: set[str], stop: threading.Event) -> None:
    """Every command line of every process on the machine (psutil reads /proc/<pid>/cmdline),
    sampled while the batch runs: the server, the worker, the flow runs, the orchestrator."""
    while not stop.wait(0.1):
        for proc in psutil.process_iter(["cmdline"]):
            seen.add(" ".join(proc.info["cmdline"] or []))


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def auth_fleet(tmp_path):
    secret = "etl:" + secrets.token_urlsafe(16)
    build_sample(f"sqlite:///{tmp_path / 'source.db'}", big_rows=2_000)
    config = write_sample_config(
        tmp_path / "etlctl.toml", f"sqlite:///{tmp_path / 'source.db'}", f"sqlite:///{tmp_path / 'target.db'}"
    )
    env_file = tmp_path / "etlctl.env"
    env_file.write_text(f"PREFECT_API_AUTH_STRING={secret}\nETLCTL_CONFIG={config}\n", encoding="utf-8")
    os.chmod(env_file, 0o600)
    env = _bare_env(tmp_path)
    started = _etlctl(env, "server", "start", "--port", "0", "--no-ui", "--env-file", str(env_file))
    assert started.returncode == 0, started.stderr
    assert "basic auth on" in started.stdout and "warning" not in started.stderr
    state = read_server_state(tmp_path / "state" / "prefect")
    outputs, workers = [started], []
    yield tmp_path, env, env_file, secret, state["url"], outputs, workers
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGINT)
            worker.wait(timeout=60)
    _etlctl(env, "server", "stop")


def test_the_fleet_works_with_auth_and_the_string_leaks_nowhere(auth_fleet):
    tmp_path, env, env_file, secret, url, outputs, workers = auth_fleet
    encoded = base64.b64encode(secret.encode()).decode()

    # Without the string, or with a wrong one: refused, by the server and by etlctl (exit 4).
    assert _api(url, "/flow_runs/filter", None).status_code == 401
    assert _api(url, "/flow_runs/filter", "etl:wrong").status_code == 401
    assert _api(url, "/flow_runs/filter", secret).status_code == 200
    refused = _etlctl(env, "setup")
    assert refused.returncode == 4 and "refused no auth string (401)" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1

    # With it, from the env file: setup, deploy, a worker, and a batch of one table.
    with_auth = {**env, "PREFECT_API_AUTH_STRING": secret, "ETLCTL_CONFIG": str(tmp_path / "etlctl.toml")}
    for command in ("setup", "deploy"):
        done = _etlctl(with_auth, command)
        assert done.returncode == 0, done.stderr
        outputs.append(done)
    worker = psutil.Popen(
        [ETLCTL, "workers", "start", "-n", "1", "--prefix", "auth", "--env-file", str(env_file)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        umask=UMASK,
    )
    workers.append(worker)
    # ... and one as supervisord and systemd run it: `workers exec`, the env file its only source
    with env_file.open("a", encoding="utf-8") as lines:
        lines.write(f"PREFECT_API_URL={url}\n")
    exec_log = (tmp_path / "exec-worker.log").open("wb")
    workers.append(
        psutil.Popen(
            [ETLCTL, "workers", "exec", "--name", "auth-02", "--env-file", str(env_file)],
            env=env,
            stdout=exec_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            umask=UMASK,
        )
    )
    until(lambda: _online(url, secret) >= {"auth-01", "auth-02"}, 120, "both workers online")
    seen: set[str] = set()
    done_running = threading.Event()
    watcher = threading.Thread(target=_watch_cmdlines, args=(seen, done_running), daemon=True)
    watcher.start()
    ran = _etlctl(env, "run", "--env-file", str(env_file), "customers")
    done_running.set()
    watcher.join()
    outputs.append(ran)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    batch = re.findall(r"^batch (\S+): ", ran.stdout, flags=re.MULTILINE)[-1]
    runs = _api(url, "/flow_runs/filter", secret).json()
    states = {r["name"]: r["state"]["type"] for r in runs if f"etl-batch:{batch}" in r["tags"]}
    assert states.get("customers") == "COMPLETED", states
    assert {r["state"]["type"] for r in runs} == {"COMPLETED"}

    # Nowhere: process arguments of every process on the machine, the command outputs, the logs,
    # and anything the API returns or the server stored (flow runs, parameters, logs, events, ...).
    # a flow run is forked by its worker's fork server and shows that command line
    assert any("flows.fleet.forkserver" in line for line in seen), "no flow run's process was seen"
    for line in seen:
        assert secret not in line and encoded not in line, line
    for done in outputs:
        assert secret not in done.stdout + done.stderr
    logs = [
        *(tmp_path / "state" / "prefect").glob("server.log*"),
        *(tmp_path / "state" / "logs").glob("*"),
        tmp_path / "exec-worker.log",
    ]
    assert any(p.name.startswith("auth-01.log") for p in logs)
    for path in logs:
        text = path.read_text(errors="replace")
        assert secret not in text and encoded not in text, path
    for path in (
        "/flow_runs/filter",
        "/deployments/filter",
        "/work_pools/filter",
        "/logs/filter",
        "/variables/filter",
    ):
        body = json.dumps(_api(url, path, secret).json())
        assert secret not in body and encoded not in body, path
    events = httpx.post(
        f"{url}/events/filter",
        json={"limit": 200},
        headers={"Authorization": f"Basic {encoded}"},
        timeout=10,
        trust_env=False,
    ).text
    assert secret not in events and encoded not in events
    for path in (tmp_path / "state" / "prefect").glob("prefect.db*"):
        blob = path.read_bytes()
        assert secret.encode() not in blob and encoded.encode() not in blob, path

    # Private, though created under umask 000.
    state = tmp_path / "state"
    assert _mode(state) == _mode(state / "prefect") == _mode(state / "logs") == 0o700
    private = [
        state / "prefect" / "server.json",
        *(state / "prefect").glob("prefect.db*"),
        *(state / "prefect").glob("server.log*"),
        *(state / "logs").glob("*"),
    ]
    assert len(private) >= 4
    assert {p.name: _mode(p) for p in private} == {p.name: 0o600 for p in private}

    worker.send_signal(signal.SIGINT)
    output = worker.communicate(timeout=60)[0].decode(errors="replace")
    assert secret not in output


def test_an_open_host_without_auth_is_warned_about(tmp_path):
    """The warning comes before the server starts; 192.0.2.1 (TEST-NET) is never bound, so the
    server fails to start and nothing listens beyond loopback."""
    env = _bare_env(tmp_path)
    opened = _etlctl(env, "server", "start", "--host", "192.0.2.1", "--port", "4999", "--no-ui", timeout=120)
    assert opened.stderr.startswith("etlctl: warning: the Prefect API on 192.0.2.1 has no authentication")
    assert opened.returncode == 4
    assert exposure_warning("0.0.0.0", None) and exposure_warning("::", None)
    assert exposure_warning("0.0.0.0", "etl:x") is None
    assert exposure_warning("127.0.0.1", None) is None and exposure_warning("localhost", None) is None
    assert exposure_warning("::1", None) is None


def test_the_session_server_keeps_its_files_private(prefect_server: ServerHandle):
    """The same code under the test run's own umask (usually 022): server home, database, log and
    state file are private too."""
    home = prefect_server.home
    files = [home / "server.json", *home.glob("prefect.db*"), *home.glob("server.log*")]
    assert len(files) >= 3
    assert _mode(home) == 0o700
    assert {p.name: _mode(p) for p in files} == {p.name: 0o600 for p in files}
