"""The lab's hosts as network namespaces on one bridge: create, enter, kill and delete them.

    create_network()                      # bridge etllab0, namespaces etl-server, etl-w1, etl-w2
    sh(on_host("w1", ["hostname"]))       # a process of host w1: its stdout is "w1\\n"
    kill_namespace(namespace("w1"))       # w1 loses power: every process in it, SIGKILLed
    delete_network()                      # whatever still runs there is killed, then all is deleted

Each host is a network namespace joined to the bridge by a veth pair, and its processes get a UTS
namespace of their own so that the host name (which names the workers) is the host's. The root
namespace, on the bridge's own address, plays the cron host. Nothing is routed beyond SUBNET: the
namespaces have no default route, the root namespace does not forward, and IPv6 is off on every lab
interface. Every process the lab starts carries LAB_ENV, so a stray can be found by its environment.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import psutil

from lab.shell import LabError, sh, until

SUBNET = "10.213.0.0/24"
BRIDGE = "etllab0"
GATEWAY = "10.213.0.1"  # the root namespace's address on the bridge: the cron host
HOSTS = {"server": "10.213.0.10", "w1": "10.213.0.11", "w2": "10.213.0.12"}
WORKER_HOSTS = ("w1", "w2")
NAMESPACE_PREFIX = "etl-"
LAB_ENV = "ETLCTL_LAB_ID"  # in every process the lab starts: how teardown and --cleanup find strays


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


def _veth(host: str) -> str:
    return f"etllab-{host}"  # interface names stop at 15 characters


def _no_ipv6(device: str) -> None:
    Path(f"/proc/sys/net/ipv6/conf/{device}/disable_ipv6").write_text("1\n")
