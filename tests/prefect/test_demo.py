"""The README's first command, as a user runs it: `etlctl demo` on a machine with nothing running."""

from __future__ import annotations

import os
import subprocess

import psutil
import pytest

from tests.prefect.conftest import ETLCTL

pytestmark = pytest.mark.prefect


def test_demo_runs_end_to_end_and_stops_what_it_started(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "ETLCTL_"))}
    env["HOME"] = str(tmp_path)  # no profile or state of the user's may leak in
    proc = subprocess.run(
        [ETLCTL, "--state-dir", str(tmp_path / "state"), "demo", "--big-rows", "20000"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "23 of 23 tables succeeded" in proc.stdout
    assert "23 of 23 tables identical" in proc.stdout
    assert "Prefect UI was at http://127.0.0.1:" in proc.stdout
    server_state = tmp_path / "state" / "demo" / "prefect" / "server.json"
    assert not server_state.exists()
    logs = sorted(p.name for p in (tmp_path / "state" / "demo" / "logs").iterdir())
    assert logs == ["demo-01.log", "demo-02.log", "demo-03.log"]
    leftovers = [
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if any(str(tmp_path) in part for part in p.info["cmdline"] or [])
        or "demo-0" in " ".join(p.info["cmdline"] or [])
    ]
    assert leftovers == []
