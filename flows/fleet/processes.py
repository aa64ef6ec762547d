"""Process utilities the fleet runtime shares: find, signal and wait for processes that may have made
process groups of their own (Prefect starts each flow run in a new session).

    left = wait_gone(procs, timeout=15); signal_groups(left, signal.SIGKILL)
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import psutil

from flows.errors import PrefectUnavailableError


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (another process could still take it before we do)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def prefect_executable() -> str:
    """The `prefect` script next to this interpreter, so servers and workers run our Prefect version."""
    beside = Path(sys.executable).with_name("prefect")
    if os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("prefect")
    if found is None:
        raise PrefectUnavailableError(
            f"no `prefect` command next to {sys.executable} or on PATH; install etlctl's dependencies"
        )
    return found


def signal_groups(procs: Iterable[psutil.Process], sig: int) -> None:
    """Send `sig` to the process group of each process (children may have made their own), never
    to the caller's own group."""
    own = os.getpgrp()
    for proc in procs:
        if not proc.is_running():  # gone, or its pid now belongs to someone else
            continue
        try:
            pgid = os.getpgid(proc.pid)
            if pgid == own:
                proc.send_signal(sig)
            else:
                os.killpg(pgid, sig)
        except (ProcessLookupError, psutil.NoSuchProcess):
            pass


def wait_gone(procs: Iterable[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Poll until every process has exited (a zombie counts) or `timeout`; return the survivors."""
    deadline = time.monotonic() + timeout
    left = [p for p in procs if is_alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = [p for p in left if is_alive(p)]
    return left


def is_alive(proc: psutil.Process) -> bool:
    """Running and not a zombie: a zombie has finished, it only waits for its parent to notice."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def tree(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return [proc]


def same_process(pid: int, create_time: float) -> bool:
    """Whether pid is still the process we started, not a later one that reused its number."""
    try:
        proc = psutil.Process(pid)
        return abs(proc.create_time() - create_time) < 1.0 and is_alive(proc)
    except psutil.NoSuchProcess:
        return False


def flow_run_processes(process: psutil.Process) -> list[psutil.Process]:
    """A worker's flow runs: the descendants that lead sessions of their own (Prefect starts each
    flow run in a new session, so no signal to the worker's group reaches it)."""
    found = []
    for child in descendants(process):
        try:
            if os.getsid(child.pid) == child.pid:
                found.append(child)
        except ProcessLookupError:
            continue
    return found


def descendants(process: psutil.Process) -> list[psutil.Process]:
    try:
        return process.children(recursive=True)
    except psutil.NoSuchProcess:
        return []
