"""Before and after a lab: whether this machine can run one, and what a crashed one left behind.

    check_prerequisites()    # LabError naming what is missing (root, a tool, PostgreSQL, a leftover)
    cleanup()                # `python -m lab --cleanup`: stop, kill and delete every trace of a lab

A lab lives in one folder under TMP_DIR named TMP_PREFIX..., the network of lab.network, and
processes marked with lab.network.LAB_ENV; that is all cleanup() has to find.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
from pathlib import Path

import psutil

from flows.errors import ConfigError
from lab.hosts import PG_PORT
from lab.network import BRIDGE, HOSTS, delete_network, lab_namespaces, link_exists, marked_processes
from lab.postgres import PgCluster, bin_dir
from lab.shell import LabError, Say

TMP_DIR = "/tmp"  # not $TMPDIR: every folder above PostgreSQL's must be searchable by postgres
TMP_PREFIX = "etllab-"


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
            "crashed one left these; `python -m lab --cleanup` removes them"
        )


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
