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


def test_a_run_whose_submission_was_under_way_during_the_read_is_in_hand():
    """The orphan check reads the API, then asks which runs were in submission since just before the
    read: one that ended its submission during the read may show there without its pid."""
    import time

    from flows.fleet.orphans import Submissions

    done_before, done_during, still_going, never = uuid4(), uuid4(), uuid4(), uuid4()
    submissions = Submissions()
    for run in (done_before, done_during, still_going):
        submissions.begin(run)
    submissions.end(done_before)
    mark = time.monotonic()
    submissions.end(done_during)
    assert submissions.since(mark) == {done_during, still_going}
    assert never not in submissions.since(0.0)
