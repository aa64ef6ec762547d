"""A real fleet on this machine: the session's Prefect server, the four deployments, and three
`prefect worker start` processes under `etlctl workers start -n 3`, loading a sample source."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from flows.config import Config, load_config
from flows.demo.sample import build_sample, write_sample_config
from flows.fleet.server import ServerHandle
from tests.polling import until

ETLCTL = str(Path(sys.executable).with_name("etlctl"))
WORKERS = ("e2e-01", "e2e-02", "e2e-03")


@dataclass
class Fleet:
    work: Path
    env: dict[str, str]
    config: Config
    supervisor: psutil.Popen

    @property
    def source_url(self) -> str:
        return f"sqlite:///{self.work / 'source.db'}"

    def etlctl(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([ETLCTL, *args], env=self.env, capture_output=True, text=True, check=False)
        if check and proc.returncode != 0:
            pytest.fail(f"etlctl {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc


def online_workers(pool: str) -> set[str]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return {w.name for w in client.read_workers_for_work_pool(pool) if w.status == "ONLINE"}


@pytest.fixture(scope="session")
def fleet(prefect_server: ServerHandle, tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    work = tmp_path_factory.mktemp("fleet")
    build_sample(f"sqlite:///{work / 'source.db'}", big_rows=20_000)
    path = write_sample_config(
        work / "etlctl.toml", f"sqlite:///{work / 'source.db'}", f"sqlite:///{work / 'target.db'}"
    )
    env = {**prefect_server.env(), "ETLCTL_CONFIG": str(path), "ETLCTL_STATE_DIR": str(work / "state")}
    fleet = Fleet(work, env, load_config(path), None)  # type: ignore[arg-type]
    fleet.etlctl("setup", check=True)
    fleet.etlctl("deploy", check=True)
    fleet.supervisor = psutil.Popen(
        [ETLCTL, "workers", "start", "-n", "3", "--prefix", "e2e"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(work / "supervisor.log").open("wb"),
        start_new_session=True,
    )
    until(lambda: online_workers(fleet.config.prefect.table_pool) >= set(WORKERS), 90, "three online workers")
    yield fleet
    if fleet.supervisor.is_running():
        family = [fleet.supervisor, *fleet.supervisor.children(recursive=True)]
        fleet.supervisor.send_signal(signal.SIGINT)
        _, alive = psutil.wait_procs(family, timeout=60)
        for proc in alive:
            os.killpg(os.getpgid(proc.pid), signal.SIGKILL)
