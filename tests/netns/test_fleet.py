"""Separate hosts on one machine (lab/: network namespaces on a bridge): a worker host dies
in the middle of a batch, and the batch still ends with every table intact, loaded by the survivor.

Only a whole host dying shows the orchestrator's lost-host check at work: a killed worker process is
restarted by its supervisor, a killed host is not. This needs root and `ip netns`; where they are
missing the test fails, since a skipped test here would hide that the fleet's failover is unchecked.
"""

from __future__ import annotations

import subprocess

import pytest

from lab.fleet import Lab
from lab.network import BRIDGE, NAMESPACE_PREFIX, link_exists, marked_processes
from lab.preflight import check_prerequisites
from lab.scenario import Report, run_scenario
from lab.shell import LabError

pytestmark = pytest.mark.prefect

KILLED, SURVIVOR = "w1", "w2"
RUN_TIMEOUT = (
    480.0  # a batch takes ~90-120 s here (240 s on a loaded host), plus ~30-45 s to notice the dead host
)


def test_a_host_killed_mid_batch_loses_no_table() -> None:
    try:
        check_prerequisites()
    except LabError as exc:
        pytest.fail(f"the fleet lab cannot run on this machine: {exc}")
    with Lab(say=print) as lab:
        lab.build()
        assert lab.password not in lab.config.read_text(encoding="utf-8")
        report = run_scenario(lab, KILLED, timeout=RUN_TIMEOUT)
    assert_torn_down(lab)

    print("\n" + "\n".join(report.lines()))
    print(
        f"{KILLED} killed: detection (lost runs marked Crashed) {_seconds(report.crashed_after)}, "
        f"recovery (their reruns Completed) {_seconds(report.recovered_after)} after the kill"
    )
    assert report.exit_code == 0, report.output
    assert report.mismatched == []
    assert set(report.table_hosts) == set(lab.tables)
    assert set(report.table_hosts.values()) == {KILLED, SURVIVOR}  # w1 loaded tables before it died
    assert_lost_tables_finished_on_survivor(report)
    assert report.verdicts == {KILLED: "down", SURVIVOR: "healthy"}


def assert_lost_tables_finished_on_survivor(report: Report) -> None:
    assert report.lost, f"nothing was in progress on {KILLED} when it was killed"
    for lost in report.lost:
        assert lost.state == "Crashed", lost
        assert lost.crashed_after is not None and lost.crashed_after > 0
        assert report.resubmitted_hosts.get(lost.table) == SURVIVOR, report.resubmitted_hosts
        assert report.table_hosts[lost.table] == SURVIVOR
    assert report.recovered_after is not None and report.recovered_after > report.crashed_after


def assert_torn_down(lab: Lab) -> None:
    """No namespace, bridge, veth, process or folder of the lab is left."""
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert [line for line in namespaces.splitlines() if line.startswith(NAMESPACE_PREFIX)] == []
    assert not link_exists(BRIDGE)
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    assert "etllab-" not in links
    assert [p.pid for p in marked_processes(lab.lab_id)] == []
    assert lab.root is not None and not lab.root.exists()


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"
