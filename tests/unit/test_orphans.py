"""A restarted worker tells which of its Running runs lost their process (flows.fleet.orphans.headless)."""

from __future__ import annotations

import os
from types import SimpleNamespace
from uuid import uuid4

import psutil

from flows.fleet.orphans import headless


def _run(worker: str = "db-01", pid: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(id=uuid4(), labels={"prefect.worker.name": worker}, infrastructure_pid=pid)


def test_only_this_workers_running_runs_without_a_live_process_are_headless():
    gone = psutil.Popen(["true"])
    gone.wait()
    alive, dead, unknown, others, submitting = (
        _run(pid=str(os.getpid())),
        _run(pid=f"db:{gone.pid}"),
        _run(),
        _run(worker="db-02", pid=str(gone.pid)),
        _run(pid=str(gone.pid)),
    )
    running = [alive, dead, unknown, others, submitting]
    assert headless(running, "db-01", {submitting.id}) == [dead]
