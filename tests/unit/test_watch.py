"""The orchestrator's wait, in its pure parts: the empty-pool clock, dead workers, the view's numbers."""

from __future__ import annotations

import datetime as dt
import io
import logging
from types import SimpleNamespace

import pytest
from rich.console import Console

from flows.progress import LineView, Snapshot, eta_seconds, render, rows_line, summary_line
from flows.rescue import PENDING_LIMIT, is_dead, lost_reason
from flows.watch import REMIND_SECONDS, IdlePool, start_command

NOW = dt.datetime(2026, 12, 7, 1, 0, tzinfo=dt.UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_empty_pool_is_reported_at_once_then_every_30_s_and_given_up_after_the_timeout(caplog):
    clock = Clock()
    idle = IdlePool("etl-tables", 100, logging.getLogger("t"), clock)
    caplog.set_level(logging.INFO)
    assert not idle.check(False, ["a", "b"])
    assert "no worker is online on pool 'etl-tables'" in caplog.text
    assert start_command("etl-tables") in caplog.text
    assert "2 runs wait (a, b)" in caplog.text
    warnings = lambda: sum("no worker is online" in r.message for r in caplog.records)  # noqa: E731
    for step in range(1, 10):  # nine polls of 2 s: under 30 s, no repeat
        clock.now = 2.0 * step
        assert not idle.check(False, ["a"])
    assert warnings() == 1
    clock.now = REMIND_SECONDS
    idle.check(False, ["a"])
    assert warnings() == 2
    clock.now = 99.0
    assert not idle.check(False, ["a"])
    clock.now = 100.0
    assert idle.check(False, ["a"])


def test_a_worker_coming_online_or_nothing_waiting_restarts_the_clock():
    clock = Clock()
    idle = IdlePool("p", 10, logging.getLogger("t"), clock)
    idle.check(False, ["a"])
    clock.now = 9.0
    assert not idle.check(True, ["a"])
    clock.now = 15.0
    assert not idle.check(False, ["a"])
    clock.now = 24.0
    assert not idle.check(False, [])
    clock.now = 40.0
    assert not idle.check(False, ["a"])


def _worker(status: str = "ONLINE", seconds_ago: float | None = 1.0, interval: int | None = 10):
    beat = None if seconds_ago is None else NOW - dt.timedelta(seconds=seconds_ago)
    return SimpleNamespace(
        name="db-01", status=status, last_heartbeat_time=beat, heartbeat_interval_seconds=interval
    )


@pytest.mark.parametrize(
    ("worker", "dead"),
    [
        (_worker(), False),
        (_worker(seconds_ago=24), False),
        (_worker(seconds_ago=26), True),  # 2.5 beats of 10 s missed: Prefect still says ONLINE
        (_worker(seconds_ago=60, interval=30), False),
        (_worker(status="OFFLINE"), True),
        (_worker(seconds_ago=None), True),
    ],
)
def test_a_worker_is_dead_after_missing_more_beats_than_a_live_one_does(worker, dead):
    assert is_dead(worker, NOW) is dead


def _run(state: str, seconds: float, worker: str | None = "db-01", pid: str | None = None):
    labels = {"prefect.worker.name": worker} if worker else {}
    kind = SimpleNamespace(
        is_pending=lambda: state == "pending", timestamp=NOW - dt.timedelta(seconds=seconds)
    )
    return SimpleNamespace(state=kind, labels=labels, infrastructure_pid=pid)


def test_only_runs_nothing_will_finish_are_given_up():
    assert "stopped heartbeating" in lost_reason(_run("pending", 1), NOW, set(), {"db-01"})
    assert lost_reason(_run("pending", 1, pid="h:12"), NOW, set(), {"db-01"}) is None  # it started
    assert lost_reason(_run("pending", 1), NOW, set(), set()) is None
    assert lost_reason(_run("running", 1), NOW, set(), {"db-01"}) is None
    assert "host db lost" in lost_reason(_run("running", 1), NOW, {"db"}, set())
    assert "stuck Pending" in lost_reason(_run("pending", PENDING_LIMIT + 1, pid="h:1"), NOW, set(), set())


SNAP = Snapshot(
    total=10,
    done=4,
    failed=1,
    waiting=3,
    running={"orders": 30.0, "big": 90.0, "small": 5.0},
    rows={"orders": (12_000, 400.0), "big": (90_000, 1_000.0)},
    seconds_per_table=[20.0, 40.0, 30.0, 30.0],
    elapsed=120.0,
)


def test_the_eta_spreads_the_work_left_over_the_running_slots():
    # mean 30 s: 3 waiting = 90, running orders 0 + big 0 + small 25 -> 115 s over 3 slots
    assert eta_seconds(SNAP) == pytest.approx(115 / 3)
    assert eta_seconds(Snapshot(total=1, done=0, failed=0, waiting=1, running={})) is None


def test_lines_and_live_table_name_counts_rows_and_the_slowest_first():
    assert summary_line("tables", SNAP) == "tables: 4 done (1 failed), 3 running, 3 waiting of 10, ETA 0:38"
    line = rows_line("tables", SNAP)
    assert line.index("big") < line.index("orders") < line.index("small")
    assert "big 90000 rows (1000/s, 1:30)" in line
    out = io.StringIO()
    Console(file=out, width=100).print(render("tables", SNAP))
    text = out.getvalue()
    assert "90,000" in text and "1,000" in text and "4 done (1 failed)" in text


def test_plain_lines_come_when_counts_change_not_at_every_poll(caplog):
    caplog.set_level(logging.INFO)
    view = LineView("tables", logging.getLogger("t"))
    view.update(SNAP)
    view.update(SNAP)
    assert sum("4 done" in r.message for r in caplog.records) == 1


def test_a_run_given_up_for_resubmission_is_refused_until_someone_schedules_it_again():
    from prefect.states import Crashed, Pending, Running, Scheduled

    from flows.fleet.naming import RESUBMITTED
    from flows.rescue import given_up

    def at(state, minute):
        state.timestamp = NOW + dt.timedelta(minutes=minute)
        return state

    def client(*states):
        return SimpleNamespace(read_flow_run_states=lambda run_id: list(states))

    mine = Crashed(message=f"worker db-01 stopped heartbeating; {RESUBMITTED}")
    assert given_up(client(at(Scheduled(), 0), at(Pending(), 1), at(mine, 2)), None) == mine.message
    assert given_up(client(at(mine, 2), at(Scheduled(), 0)), None) == mine.message  # read in time order
    assert given_up(client(at(Scheduled(), 0), at(Crashed(message="process killed"), 1)), None) is None
    assert given_up(client(at(mine, 1), at(Scheduled(), 2), at(Running(), 3)), None) is None


def test_a_worker_gives_back_only_claims_it_neither_submits_nor_runs():
    from uuid import uuid4

    from flows.fleet.orphans import orphans

    def run(worker="db-01", pid=None):
        return SimpleNamespace(id=uuid4(), labels={"prefect.worker.name": worker}, infrastructure_pid=pid)

    unstarted, submitting, running, dead, local, other = (
        run(),
        run(),
        run(pid="4242"),
        run(pid="4343"),
        run(pid="db:4242"),
        run(worker="db-02"),
    )
    pending = [unstarted, submitting, running, dead, local, other]
    assert orphans(pending, "db-01", {submitting.id}, {4242}) == [unstarted, dead]


def test_a_run_that_started_after_it_was_given_up_is_resubmitted_like_a_crashed_one():
    from prefect.states import Cancelled, Completed, Crashed, Failed

    from flows.fleet.naming import RESUBMITTED
    from flows.rescue import to_resubmit

    why = f"worker db-01 has no process for the run it claimed; {RESUBMITTED}"
    assert to_resubmit(Crashed(message="process killed"))
    assert to_resubmit(Cancelled(message=f"started after it was given up ({why})"))
    assert not to_resubmit(Cancelled(message="cancelled by hand"))
    assert not to_resubmit(Failed(message="no such table"))
    assert not to_resubmit(Completed())
