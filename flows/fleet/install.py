"""Putting a host's worker services in place and restarting them one at a time.

`etlctl machine register` renders the files (flows.fleet.render), writes them where the host's
supervisord or systemd reads them, and asks the service manager to start them; `etlctl machine
restart` restarts one worker at a time, each only once it has no flow run in progress, so a rolling
upgrade never interrupts a table.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from flows.errors import ConfigError
from flows.fleet import render
from flows.fleet.naming import worker_name
from flows.fleet.processes import flow_run_processes
from flows.limits import WorkerLimits

SUPERVISOR_DIR = Path("/etc/supervisor/conf.d")
SYSTEMD_DIR = Path("/etc/systemd/system")
IDLE_POLL_SECONDS = 1.0


@dataclass(frozen=True)
class HostPlan:
    """What one host runs: rendered files and the commands that start them."""

    manager: str
    files: dict[Path, str]
    start: list[list[str]]


def plan_host(
    host: str,
    manager: str,
    workers: int,
    etlctl: str,
    env_file: str,
    user: str | None,
    home: str,
    target_dir: Path | None,
    supervisor_config: Path | None = None,
    *,
    pool: str | None = None,
    server: bool = False,
    limits: WorkerLimits | None = None,
) -> HostPlan:
    """The files for `host` and the commands that start them; `user=None` keeps the manager's own.

    `server`: this host also runs the Prefect server (systemd only), started before the workers.
    `limits`: [workers] of the config, written into the systemd worker unit (supervisord has no such
    keys: there the worker applies them to each run itself).
    Registering again with fewer workers than before stops the instances above the new count
    under systemd (each drains first); supervisord's `update` restarts the group with the new count.
    """
    if server and manager != "systemd":
        raise ConfigError(
            "--server installs prefect-server.service and needs --systemd; without systemd, run "
            "`etlctl server start --host 0.0.0.0` from the host's boot scripts"
        )
    if manager == "supervisor":
        directory = target_dir or SUPERVISOR_DIR
        text = render.render_supervisor(workers, etlctl, env_file, home, user=user, host=host, pool=pool)
        ctl = _supervisorctl(supervisor_config)
        return HostPlan(manager, {directory / "etlctl.conf": text}, [[*ctl, "reread"], [*ctl, "update"]])
    if manager == "systemd":
        directory = target_dir or SYSTEMD_DIR
        units = render.render_systemd(
            workers, etlctl, user or "root", env_file, pool=pool, server=server, limits=limits
        )
        start = [["systemctl", "daemon-reload"]]
        if server:
            start.append(["systemctl", "enable", "--now", render.SERVER_UNIT])
        start.append(["systemctl", "enable", "--now", render.TARGET])
        surplus = range(workers + 1, _registered_workers(directory / render.TARGET) + 1)
        if surplus:
            start.append(["systemctl", "stop", "--no-block", *(f"etl-worker@{i}.service" for i in surplus)])
        return HostPlan(manager, {directory / name: text for name, text in units.items()}, start)
    raise ConfigError(f"unknown service manager {manager!r}: use --supervisor or --systemd")


def _registered_workers(target: Path) -> int:
    """How many workers the host's installed etl-workers.target starts (0 if none is installed)."""
    try:
        text = target.read_text(encoding="utf-8")
    except FileNotFoundError:
        return 0
    return max(
        (int(n) for n in re.findall(r"^Wants=etl-worker@(\d+)\.service$", text, re.MULTILINE)), default=0
    )


def describe(plan: HostPlan, host: str, workers: int, pool: str) -> str:
    """What `register --dry-run` prints: every file in full, then what would run and be recorded."""
    parts = [f"# ---- {path}\n{text.rstrip()}\n" for path, text in plan.files.items()]
    parts += ["# would run: " + " ".join(command) for command in plan.start]
    parts.append(f"# would record host {host}: {workers} workers on pool {pool}, {plan.manager}")
    return "\n".join(parts)


def install(plan: HostPlan, start: bool) -> list[str]:
    """Write the files, then run the start commands; returns what was done, line by line."""
    done = []
    for path, text in plan.files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        done.append(f"wrote {path}")
    for command in plan.start if start else []:
        _run(command)
        done.append("ran " + " ".join(command))
    return done


def restart_command(manager: str, host: str, index: int, supervisor_config: Path | None = None) -> list[str]:
    if manager == "supervisor":
        return [*_supervisorctl(supervisor_config), "restart", f"etl-worker:{worker_name(host, index)}"]
    return ["systemctl", "restart", f"etl-worker@{index}.service"]


def worker_busy(name: str) -> bool:
    """Whether the local worker `name` has a flow run in progress."""
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "worker" in cmdline and "--name" in cmdline and name in cmdline:
            return bool(flow_run_processes(proc))
    return False


def rolling_restart(
    manager: str,
    host: str,
    workers: int,
    report: Callable[[str], None],
    supervisor_config: Path | None = None,
) -> None:
    """Restart each worker only when idle; the drain on SIGTERM makes an idle restart immediate."""
    for index in range(1, workers + 1):
        name = worker_name(host, index)
        if worker_busy(name):
            report(f"{name}: waiting for its flow run to finish")
        while worker_busy(name):
            time.sleep(IDLE_POLL_SECONDS)
        _run(restart_command(manager, host, index, supervisor_config))
        report(f"{name}: restarted")


def _supervisorctl(config: Path | None) -> list[str]:
    """etlctl's own supervisorctl (the supervisor package is a dependency), else the system's."""
    beside = Path(sys.executable).with_name("supervisorctl")
    command = str(beside) if beside.exists() else "supervisorctl"
    return [command, *(["-c", str(config)] if config else [])]


def _run(command: list[str]) -> None:
    try:
        subprocess.run(command, check=True, capture_output=True, text=True)
    except FileNotFoundError:
        raise ConfigError(f"{command[0]} is not installed on this host") from None
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or exc.stdout or "").strip().splitlines()
        raise ConfigError(
            f"`{' '.join(command)}` failed: {detail[-1] if detail else exc.returncode}"
        ) from None
