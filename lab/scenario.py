"""The scenario: a batch from the cron host, a worker host killed in the middle of it, and a Report
of what happened to every table.

    with Lab() as lab:
        lab.build()
        report = run_scenario(lab, "w1")    # None: the same batch without the failure
    print("\\n".join(report.lines()), report.ok)

The Report is built from what the system itself recorded: Prefect's flow runs and state histories,
the target's `_etlctl_runs`, `etlctl machine ls`, and a fingerprint of every table on both sides.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import psutil
from prefect.client.schemas.objects import TERMINAL_STATES, StateType
from sqlalchemy import create_engine, select

from flows.etl.fingerprint import fingerprint
from flows.etl.state import state_tables
from flows.fleet.naming import host_of_worker, run_host
from flows.fleet.processes import is_alive
from flows.names import TABLE_FLOW
from lab.fleet import Lab
from lab.network import WORKER_HOSTS, kill_namespace, namespace
from lab.shell import LabError, tail, until

RUN_TIMEOUT = 420.0


@dataclass
class LostRun:
    """A table run that was in progress on the killed host."""

    table: str
    state: str  # its final state
    crashed_after: float | None  # seconds from the kill until Prefect recorded it Crashed


@dataclass
class Report:
    exit_code: int | None
    seconds: float  # `etlctl run`, start to exit
    table_hosts: dict[str, str]  # table -> host whose worker loaded it (the target's _etlctl_runs.worker)
    mismatched: list[str]  # tables whose target differs from the source
    killed_host: str | None = None
    lost: list[LostRun] = field(default_factory=list)
    finished_in_flight: list[str] = field(default_factory=list)  # ended before the kill, reported after it
    resubmitted_hosts: dict[str, str] = field(default_factory=dict)  # lost table -> host of its rerun
    recovered_after: float | None = None  # kill -> the last rerun of a lost table Completed
    verdicts: dict[str, str] = field(default_factory=dict)  # `etlctl machine ls` afterwards
    output: str = ""  # the end of `etlctl run`'s output

    @property
    def crashed_after(self) -> float | None:
        times = [lost.crashed_after for lost in self.lost if lost.crashed_after is not None]
        return max(times) if times else None

    @property
    def ok(self) -> bool:
        recovered = all(host != self.killed_host for host in self.resubmitted_hosts.values())
        complete = set(self.resubmitted_hosts) == {lost.table for lost in self.lost}
        return self.exit_code == 0 and not self.mismatched and recovered and complete

    def lines(self) -> list[str]:
        by_host: dict[str, list[str]] = {}
        for table, host in sorted(self.table_hosts.items()):
            by_host.setdefault(host, []).append(table)
        lines = [f"etlctl run: exit {self.exit_code} after {self.seconds:.1f} s"]
        lines += [f"  loaded on {host}: {', '.join(tables)}" for host, tables in sorted(by_host.items())]
        if self.killed_host:
            for lost in self.lost:
                rerun = self.resubmitted_hosts.get(lost.table, "nowhere")
                crashed = f"{lost.crashed_after:.1f} s" if lost.crashed_after is not None else "never"
                lines.append(
                    f"  lost on {self.killed_host}: {lost.table} ({lost.state} {crashed} after the kill), "
                    f"rerun on {rerun}"
                )
            for table in self.finished_in_flight:
                lines.append(f"  finished on {self.killed_host} before the kill, reported after: {table}")
            if not self.lost:
                lines.append(f"  nothing was in progress on {self.killed_host} when it was killed")
            lines.append(f"  kill -> lost runs marked Crashed: {_seconds(self.crashed_after)}")
            lines.append(f"  kill -> resubmitted runs Completed: {_seconds(self.recovered_after)}")
        lines.append(f"  hosts afterwards: {', '.join(f'{h} {v}' for h, v in sorted(self.verdicts.items()))}")
        equal = "every table" if not self.mismatched else "NOT " + ", ".join(self.mismatched)
        lines.append(f"  target equals source: {equal}")
        return lines


def run_scenario(lab: Lab, kill_host: str | None = None, timeout: float = RUN_TIMEOUT) -> Report:
    """`etlctl run` from the cron host; with `kill_host`, that host dies in the middle of the batch.

    The kill waits until the host has finished a table and has two more in progress, so the
    report shows it both doing work and losing work.
    """
    if kill_host is not None and kill_host not in WORKER_HOSTS:
        raise LabError(f"{kill_host!r} is not a worker host ({', '.join(WORKER_HOSTS)})")
    lab.say("etlctl run (cron host)" + (f"; {kill_host} dies mid-batch" if kill_host else ""))
    log_path = lab.root / "etlctl-run.log"
    batch = lab.start_batch(log_path)
    started = time.monotonic()
    killed_at = dead_at = None
    in_progress: list[dict[str, Any]] = []
    if kill_host is not None:
        until(
            lambda: _ready_to_kill(lab, batch, kill_host),
            timeout,
            f"two tables in progress on {kill_host}",
            0.25,
        )
        killed_at = time.time()
        killed = kill_namespace(namespace(kill_host))
        dead_at = time.time()
        lab.host_lost_power(kill_host)
        in_progress = [r for r in table_runs(lab) if _host_of(r) == kill_host and not _final(r)]
        lab.say(
            f"kill -9 of every process on {kill_host} ({len(killed)} processes) at "
            f"{time.monotonic() - started:.1f} s; in progress there: "
            + (", ".join(f"{r['name']} ({r['state_type']})" for r in in_progress) or "nothing")
        )
    try:
        exit_code = batch.wait(timeout=max(1.0, timeout - (time.monotonic() - started)))
    except psutil.TimeoutExpired:
        raise LabError(
            f"`etlctl run` still going after {timeout:.0f} s; table runs not finished: "
            f"{_unfinished(lab)}; end of its output:\n{tail(log_path, 15)}"
        ) from None
    seconds = lab.timings["etlctl run"] = time.monotonic() - started
    lab.say(f"etlctl run exited {exit_code} after {seconds:.1f} s")
    with lab.step("report"):
        kill = (killed_at, dead_at)
        report = _report(lab, exit_code, seconds, kill_host, kill, in_progress, tail(log_path))
    return report


def table_runs(lab: Lab) -> list[dict[str, Any]]:
    """Every table flow run on the server, oldest first (the server is the lab's own: one batch)."""
    flow_name = TABLE_FLOW
    body = {"flows": {"name": {"any_": [flow_name]}}, "sort": "EXPECTED_START_TIME_ASC", "limit": 200}
    response = lab.api.post("/flow_runs/filter", json=body)
    response.raise_for_status()
    return response.json()


def state_history(lab: Lab, run_id: str) -> list[dict[str, Any]]:
    response = lab.api.get("/flow_run_states/", params={"flow_run_id": run_id})
    response.raise_for_status()
    return response.json()


def target_hosts(lab: Lab) -> dict[str, str]:
    """Table -> host of the worker that loaded it last, from the target's own run history."""
    _, runs = state_tables(None)
    engine = create_engine(lab.cluster.url("target"))
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(runs.c.table_name, runs.c.worker).order_by(runs.c.id)).all()
    finally:
        engine.dispose()
    return {table: host_of_worker(worker) for table, worker in rows if worker}


def mismatched_tables(lab: Lab) -> list[str]:
    source = create_engine(lab.cluster.url("source"))
    target = create_engine(lab.cluster.url("target"))
    try:
        return [t for t in lab.tables if not _same(source, target, t)]
    finally:
        source.dispose()
        target.dispose()


def _ready_to_kill(lab: Lab, batch: psutil.Popen, host: str) -> bool:
    """The host has finished a table, is running one, and has a second one claimed or running.

    A small table runs for about a second, which a kill can miss; with both of the host's workers
    busy, at least one table is certainly lost. A batch that ends first is an error, not a wait.
    """
    if not is_alive(batch):
        raise LabError(f"the batch ended before {host} was busy enough to kill")
    runs = [r for r in table_runs(lab) if _host_of(r) == host]
    states = [r["state_type"] for r in runs]
    in_progress = sum(1 for r in runs if not _final(r) and r["state_type"] != "SCHEDULED")
    return "COMPLETED" in states and "RUNNING" in states and in_progress >= 2


def _unfinished(lab: Lab) -> str:
    try:
        runs = [r for r in table_runs(lab) if not _final(r)]
    except httpx.HTTPError as exc:
        return f"unknown ({exc})"
    return ", ".join(f"{r['name']} ({r['state_type']} on {_host_of(r) or '?'})" for r in runs) or "none"


def _report(
    lab: Lab,
    exit_code: int,
    seconds: float,
    kill_host: str | None,
    kill: tuple[float | None, float | None],
    in_progress: list[dict[str, Any]],
    output: str,
) -> Report:
    """`kill` is when the kill began and when every process was dead: a run whose Completed state is
    stamped before the latter finished in time, and only its last request reached the server late."""
    killed_at, dead_at = kill
    report = Report(exit_code, seconds, target_hosts(lab), mismatched_tables(lab), kill_host)
    report.output = output
    report.verdicts = {host: entry["verdict"] for host, entry in lab.machines().items()}
    if kill_host is None or killed_at is None:
        return report
    runs = table_runs(lab)
    by_id = {r["id"]: r for r in runs}
    for lost in in_progress:
        final = by_id[lost["id"]]
        if final["state_type"] == "COMPLETED" and _timestamp(final["end_time"]) <= dead_at:
            report.finished_in_flight.append(lost["name"])
            continue
        crashed = [s for s in state_history(lab, lost["id"]) if s["type"] == "CRASHED"]
        crashed_after = _timestamp(crashed[0]["timestamp"]) - killed_at if crashed else None
        report.lost.append(LostRun(lost["name"], final["state_name"], crashed_after))
        reruns = [
            r
            for r in runs
            if r["name"] == lost["name"] and r["id"] != lost["id"] and _timestamp(r["created"]) > killed_at
        ]
        done = [r for r in reruns if r["state_type"] == "COMPLETED"]
        if done:
            report.resubmitted_hosts[lost["name"]] = _host_of(done[-1]) or "?"
            finished = _timestamp(done[-1]["end_time"]) - killed_at
            report.recovered_after = max(report.recovered_after or 0.0, finished)
    return report


def _host_of(flow_run: dict[str, Any]) -> str | None:
    return run_host(flow_run.get("labels"))


def _final(flow_run: dict[str, Any]) -> bool:
    return StateType(flow_run["state_type"]) in TERMINAL_STATES


def _timestamp(value: str) -> float:
    return dt.datetime.fromisoformat(value).timestamp()


def _same(source: Any, target: Any, table: str) -> bool:
    try:
        return fingerprint(source, table) == fingerprint(target, table)
    except Exception:  # a table missing from the target is a mismatch, not a crash of the report
        return False


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} s"
