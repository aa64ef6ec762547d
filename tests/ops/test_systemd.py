"""systemd's own checker on every unit, as shipped in ops/systemd and as rendered for a host.

`systemd-analyze verify` needs no running systemd: it loads the units from a root directory holding
the units, the host's stock units they depend on (sysinit.target, ...), an executable at each
ExecStart path and the env file. It only warns about unknown keys and bad values, so any such
warning fails the test. Needs the Debian package `systemd`; nothing is installed from here.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from flows.fleet.render import DEFAULT_ENV_FILE, DEFAULT_ETLCTL, render_systemd
from flows.limits import parse_limits
from tests.ops.conftest import OPS

ANALYZE = shutil.which("systemd-analyze")


@pytest.fixture(autouse=True)
def _systemd_analyze() -> None:
    """A missing checker is a broken test machine (.ci/run installs `systemd`), not a pass."""
    if ANALYZE is None:
        pytest.fail("systemd-analyze is missing: apt-get install systemd")


STOCK_UNITS = Path("/usr/lib/systemd/system")
BAD = re.compile(r"Unknown key|Failed to parse|Unknown section|ignoring", re.IGNORECASE)
TEMPLATE_UNITS = {
    "etl-worker@.service": "etl-worker@1.service",
    "etl-workers.target": "etl-workers.target",
    "etl-orchestrator.service": "etl-orchestrator.service",
    "etl-orchestrator.timer": "etl-orchestrator.timer",
    "prefect-server.service": "prefect-server.service",
}
HOST = {"etlctl": "/srv/etlctl/bin/etlctl", "user": "etlsvc", "env_file": "/etc/etl/host.env"}
BEST_RATINGS = ("PERFECT", "SAFE", "OK")


def make_root(tmp_path: Path, units: dict[str, str], etlctl: str, env_file: str) -> Path:
    """A root directory systemd-analyze can load `units` from."""
    root = tmp_path / "root"
    shutil.copytree(STOCK_UNITS, root / STOCK_UNITS.relative_to("/"), symlinks=True)
    system = root / "etc/systemd/system"
    system.mkdir(parents=True)
    for name, text in units.items():
        (system / name).write_text(text, encoding="utf-8")
    stub = root / etlctl.lstrip("/")
    stub.parent.mkdir(parents=True, exist_ok=True)
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    env = root / env_file.lstrip("/")
    env.parent.mkdir(parents=True, exist_ok=True)
    env.write_text("PREFECT_API_URL=http://prefect.example:4200/api\n")
    return root


def analyze(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    return subprocess.run(
        [ANALYZE, *args, f"--root={root}"], capture_output=True, text=True, timeout=60, check=False
    )


def assert_verifies(root: Path, unit: str) -> None:
    proc = analyze(root, "verify", unit)
    complaints = [line for line in (proc.stdout + proc.stderr).splitlines() if BAD.search(line)]
    assert proc.returncode == 0 and not complaints, f"{unit}:\n{proc.stdout}{proc.stderr}"


def template_units() -> dict[str, str]:
    return {name: (OPS / "systemd" / name).read_text(encoding="utf-8") for name in TEMPLATE_UNITS}


@pytest.mark.parametrize("template", list(TEMPLATE_UNITS))
def test_template_units_verify(tmp_path: Path, template: str) -> None:
    root = make_root(tmp_path, template_units(), DEFAULT_ETLCTL, DEFAULT_ENV_FILE)
    assert_verifies(root, TEMPLATE_UNITS[template])


def test_rendered_units_verify(tmp_path: Path) -> None:
    units = render_systemd(4, HOST["etlctl"], HOST["user"], HOST["env_file"], pool="nightly", server=True)
    assert "prefect-server.service" in units
    assert f"--env-file {HOST['env_file']} --pool nightly\n" in units["etl-worker@.service"]
    root = make_root(tmp_path, units, HOST["etlctl"], HOST["env_file"])
    for unit in (
        "etl-worker@1.service",
        "etl-worker@4.service",
        *sorted(set(units) - {"etl-worker@.service"}),
    ):
        assert_verifies(root, unit)


def test_a_worker_unit_with_limits_verifies(tmp_path: Path) -> None:
    """systemd parses each limit's value ("Failed to parse" fails the test)."""
    limits = parse_limits({"memory_max": "2G", "memory_high": "1536M", "cpu_quota": "12.5%", "nice": 10})
    units = render_systemd(2, HOST["etlctl"], HOST["user"], HOST["env_file"], limits=limits)
    root = make_root(tmp_path, units, HOST["etlctl"], HOST["env_file"])
    assert_verifies(root, "etl-worker@1.service")
    for line in ("MemoryMax=2432M", "MemoryHigh=1920M", "CPUQuota=12.5%", "Nice=10"):
        assert f"\n{line}\n" in units["etl-worker@.service"], line


def test_the_checker_catches_a_bad_key(tmp_path: Path) -> None:
    """The warnings this module fails on do appear: verify alone exits 0 on them."""
    units = template_units()
    units["etl-worker@.service"] += "KillMode=mixd\nTimeoutStopSecs=660\n"
    root = make_root(tmp_path, units, DEFAULT_ETLCTL, DEFAULT_ENV_FILE)
    with pytest.raises(AssertionError, match="Unknown key"):
        assert_verifies(root, "etl-worker@1.service")


@pytest.mark.parametrize(
    "unit", ["etl-worker@1.service", "etl-orchestrator.service", "prefect-server.service"]
)
def test_hardening_exposure_is_ok_or_better(tmp_path: Path, unit: str) -> None:
    root = make_root(tmp_path, template_units(), DEFAULT_ETLCTL, DEFAULT_ENV_FILE)
    proc = analyze(root, "security", "--offline=true", unit)
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", proc.stdout)
    assert found, proc.stdout + proc.stderr
    score, rating = float(found.group(1)), found.group(2)
    print(f"\nsystemd-analyze security {unit}: {score} {rating}")
    assert rating in BEST_RATINGS and score < 5.0, proc.stdout
