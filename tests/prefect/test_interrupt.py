"""An `etlctl run` killed (-9) or interrupted (Ctrl+C) mid-batch, then the next `etlctl run`: while
the first lives a second is refused (exit 75); once it is dead the next one starts at once (the
killed holder's lease is released, not waited out), no table is loaded by two runs at once, the old
orchestrator run ends in a final state, and every target table equals its source afterwards."""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import time
from itertools import pairwise

import psutil
import pytest
from sqlalchemy import create_engine, select, text

from flows.etl.fingerprint import fingerprint
from flows.etl.state import state_tables
from flows.names import ORCHESTRATOR_FLOW, TABLE_FLOW
from tests.polling import until
from tests.prefect.conftest import ETLCTL

pytestmark = pytest.mark.prefect


def _runs(flow: str) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow])), limit=200)


def _mid_batch(before: set) -> bool:
    """Some table runs of the new batch load while others still wait for a worker."""
    runs = [r for r in _runs(TABLE_FLOW) if r.id not in before]
    return any(r.state.is_running() for r in runs) and any(r.state.is_scheduled() for r in runs)


def _overlaps(fleet) -> list[str]:
    """Tables with two runs in the target's history whose [start, end] intervals overlap."""
    runs = state_tables(None)[1]
    with create_engine(f"sqlite:///{fleet.work / 'target.db'}").connect() as conn:
        rows = conn.execute(select(runs.c.table_name, runs.c.finished_at, runs.c.seconds)).all()
    spans: dict[str, list[tuple[dt.datetime, dt.datetime]]] = {}
    for table, finished, seconds in rows:
        spans.setdefault(table, []).append((finished - dt.timedelta(seconds=seconds), finished))
    bad = []
    for table, intervals in spans.items():
        intervals.sort()
        if any(later[0] < earlier[1] for earlier, later in pairwise(intervals)):
            bad.append(table)
    return bad


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_the_next_run_settles_an_interrupted_batch(fleet, signum):
    before_tables = {r.id for r in _runs(TABLE_FLOW)}
    before_orch = {r.id for r in _runs(ORCHESTRATOR_FLOW)}
    err = (fleet.work / f"run-{signum}.err").open("w")
    first = psutil.Popen([ETLCTL, "run"], env=fleet.env, stdout=subprocess.DEVNULL, stderr=err)
    until(lambda: _mid_batch(before_tables), 180, "tables loading and tables queued")
    if signum == signal.SIGKILL:
        live = fleet.etlctl("run")  # the holder is alive: never two orchestrators at once
        assert live.returncode == 75 and "another orchestrator run is active" in live.stderr, live.stderr
        assert first.is_running()
    first.send_signal(signum)
    stopped_at = time.monotonic()
    code = first.wait(timeout=120)
    (old,) = [r for r in _runs(ORCHESTRATOR_FLOW) if r.id not in before_orch]
    if signum == signal.SIGINT:
        assert code == 130, (fleet.work / f"run-{signum}.err").read_text()[-3000:]
        assert "queued runs cancelled" in (fleet.work / f"run-{signum}.err").read_text()
    second_err = fleet.work / f"second-{signum}.err"
    second = subprocess.Popen(  # at once: a dead holder's lease is released, not waited out
        [ETLCTL, "run"], env=fleet.env, stdout=subprocess.PIPE, stderr=second_err.open("w"), text=True
    )
    if signum == signal.SIGKILL:
        until(
            lambda: "released its lease" in second_err.read_text() or second.poll() is not None,
            120,
            "takeover",
        )
        print(
            f"\nkill -9 of etlctl run to the next run taking its lock: {time.monotonic() - stopped_at:.1f} s"
        )
    out, _ = second.communicate(timeout=900)
    assert second.returncode == 0, out + second_err.read_text()[-3000:]
    if signum == signal.SIGKILL:
        assert f"its process {first.pid} on" in second_err.read_text()
    (old,) = [r for r in _runs(ORCHESTRATOR_FLOW) if r.id == old.id]
    expected = "Cancelled" if signum == signal.SIGINT else "Crashed"
    assert old.state.name == expected
    assert not [r.name for r in _runs(TABLE_FLOW) if not r.state.is_final()]
    assert _overlaps(fleet) == []
    source, target = create_engine(fleet.source_url), create_engine(f"sqlite:///{fleet.work / 'target.db'}")
    tables = [name for (name,) in target.connect().execute(text("SELECT table_name FROM _etlctl_state"))]
    assert len(tables) >= 20
    assert [t for t in tables if fingerprint(source, t) != fingerprint(target, t)] == []
