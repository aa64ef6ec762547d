"""Launch benchmarks (issue 12): how fast a free worker starts its next table, and how the fan-out scales.

python -m bench.launch [--only gap,makespan,demo,fanout] [--fanout 100,1000] [--repeat 1]
                       [--server-db sqlite|postgresql]

gap       slot idle gap: 30 small tables through 3 workers, `etlctl` type and Prefect's stock `process`
          type one after the other on the same server; gaps from Prefect's own run timestamps
makespan  20 tables of about 3 s each through 3 `etlctl` workers: makespan over ideal
demo      the demo's 23 tables: `etlctl run` through 3 workers against `etlctl run --single-flow`
fanout    100 and 1,000 tiny tables through 10 workers with the real orchestrator: runs created per
          second, orchestrator API requests, peak memory of orchestrator and server, total time;
          `--server-db postgresql` puts the Prefect server on a throwaway PostgreSQL cluster
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from bench import lab as L

PROBE_ROWS = (200_000, 1_000_000)
ORCHESTRATOR = """
import json, resource, sys, time
import httpx
calls = [0]
def count(send):
    def wrapper(self, *args, **kwargs):
        calls[0] += 1
        return send(self, *args, **kwargs)
    return wrapper
def acount(send):
    async def wrapper(self, *args, **kwargs):
        calls[0] += 1
        return await send(self, *args, **kwargs)
    return wrapper
httpx.Client.send = count(httpx.Client.send)
httpx.AsyncClient.send = acount(httpx.AsyncClient.send)
from flows.config import load_config
from flows.run import run_batch
started = time.time()
report = run_batch(load_config())
print(json.dumps({"ok": report.ok, "batch": report.batch_id, "seconds": time.time() - started,
                  "requests": calls[0], "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "tables": len(report.results)}))
"""


def gap(repeat: int) -> list[str]:
    lines = []
    with L.lab() as lab:
        names = L.build_source(lab.work / "source.db", 30, 2000)
        figures = {}
        for kind in ("etlctl", "process"):
            config = L.write_config(
                lab.work / f"{kind}.toml", lab.work / "source.db", lab.work / f"{kind}.db", names
            )
            deployment = L.make_pool_and_deployment(f"bench-{kind}", kind)
            gaps: list[float] = []
            with L.workers(lab, f"bench-{kind}", kind, 3, config, kind):
                for _ in range(repeat):
                    final = L.wait_final(L.create_runs(deployment, names), 1800)
                    assert all(r.state.is_completed() for r in final), [r.state for r in final]
                    gaps += L.slot_gaps(final)
            figures[kind] = gaps
            lines.append(
                f"gap {kind:<8} 30 tables x {repeat}, 3 workers: slot idle gap median {L.median(gaps):5.2f} s"
                f"  p90 {L.quantile(gaps, 0.9):5.2f} s  (n={len(gaps)})"
            )
        ratio = L.median(figures["process"]) / L.median(figures["etlctl"])
        lines.append(f"gap ratio  stock process / etlctl median gap: {ratio:.1f}x")
    return lines


def makespan(repeat: int) -> list[str]:
    lines = []
    with L.lab() as lab:
        rows = _rows_for_seconds(lab.work, 3.0)
        alone = _load_seconds(lab.work, rows, "alone")
        names = L.build_source(lab.work / "source.db", 20, rows)
        config = L.write_config(lab.work / "m.toml", lab.work / "source.db", lab.work / "m.db", names)
        deployment = L.make_pool_and_deployment("bench-makespan", "etlctl")
        with L.workers(lab, "bench-makespan", "etlctl", 3, config, "mk"):
            for _ in range(repeat):
                begun = time.time()
                final = L.wait_final(L.create_runs(deployment, names), 1800)
                assert all(r.state.is_completed() for r in final)
                span = max(r.end_time.timestamp() for r in final) - begun
                created = max(r.created.timestamp() for r in final) - begun
                first = min(r.start_time.timestamp() for r in final) - begun
                took = L.durations(final)
                ideal = max(sum(took) / 3, max(took))
                lines.append(
                    f"makespan   20 tables x {rows} rows (one alone {alone:.1f} s; median run in the fleet"
                    f" {L.median(took):.1f} s), 3 workers: "
                    f"{span:.1f} s, ideal {ideal:.1f} s, ratio {span / ideal:.2f} (all runs created after"
                    f" {created:.1f} s, first Running after {first:.1f} s)"
                )
    return lines


def demo() -> list[str]:
    from flows.demo.sample import build_sample, write_sample_config

    with L.lab() as lab:
        source = f"sqlite:///{lab.work / 'source.db'}"
        tables = build_sample(source)
        fleet_cfg = write_sample_config(lab.work / "fleet.toml", source, f"sqlite:///{lab.work / 'fleet.db'}")
        single_cfg = write_sample_config(
            lab.work / "single.toml", source, f"sqlite:///{lab.work / 'single.db'}"
        )
        env = lab.env(ETLCTL_CONFIG=str(fleet_cfg), ETLCTL_STATE_DIR=str(lab.work / "state"))
        L.setup_and_deploy(env)
        with L.workers(lab, "etl-tables", "etlctl", 3, fleet_cfg, "demo"):
            fleet_s = _timed([L.ETLCTL, "run"], env)
        single_s = _timed([L.ETLCTL, "run", "--single-flow"], {**env, "ETLCTL_CONFIG": str(single_cfg)})
    return [
        f"demo       {len(tables)} tables: 3 workers {fleet_s:.1f} s, --single-flow {single_s:.1f} s, "
        f"fleet/single {fleet_s / single_s:.2f}"
    ]


def fanout(sizes: list[int], server_db: str) -> list[str]:
    lines = []
    for size in sizes:
        with L.lab(server_db) as lab:
            names = L.build_source(lab.work / "source.db", size, 10, prefix="tiny")
            config = L.write_config(lab.work / "f.toml", lab.work / "source.db", lab.work / "f.db", names)
            env = lab.env(ETLCTL_CONFIG=str(config), ETLCTL_STATE_DIR=str(lab.work / "state"))
            L.setup_and_deploy(env)
            with L.workers(lab, "etl-tables", "etlctl", 10, config, "fan"):
                peak = _PeakRss(lab.server.pid)
                out = subprocess.run(
                    [sys.executable, "-c", ORCHESTRATOR], env=env, capture_output=True, text=True, check=False
                )
                peak.stop()
            if out.returncode != 0:
                raise RuntimeError(f"orchestrator failed: {out.stderr[-3000:]}")
            report = json.loads(out.stdout.strip().splitlines()[-1])
            created = _creation_span(report["batch"])
            lines.append(
                f"fanout     {size:>5} tables, 10 workers, {server_db} server: "
                f"total {report['seconds']:.0f} s, "
                f"all {size} runs created in {created:.1f} s ({size / created:.0f}/s), "
                f"orchestrator {report['requests']} API requests ({report['requests'] / size:.1f}/table), "
                f"peak RSS orchestrator "
                f"{report['peak_kib'] / 1024:.0f} MiB, server {peak.peak / 2**20:.0f} MiB, ok={report['ok']}"
            )
            print(lines[-1], flush=True)  # a 1,000-table run is long: show each size as it ends
    return lines


class _PeakRss:
    """Samples the RSS of a process tree every 0.5 s from a thread."""

    def __init__(self, pid: int) -> None:
        self.peak = 0
        self._done = threading.Event()
        self._root = psutil.Process(pid)
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._done.wait(0.5):
            try:
                procs = [self._root, *self._root.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in procs))
            except psutil.Error:
                continue

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


def _creation_span(batch: str) -> float:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterTags

    from flows.orchestrator import batch_tag

    created = []
    with get_client(sync_client=True) as client:
        offset = 0
        while True:
            page = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[L.TABLE_FLOW])),
                flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[batch_tag(batch)])),
                limit=200,
                offset=offset,
            )
            created += [r.created.timestamp() for r in page]
            if len(page) < 200:
                break
            offset += 200
    with get_client(sync_client=True) as client:
        parent = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["main-etl-job"])), limit=1
        )[0]
    return max(created) - parent.start_time.timestamp()


def _rows_for_seconds(work: Path, seconds: float) -> int:
    """Rows for one table to load in about `seconds` here and now, from the difference between two
    timed loads: one load's fixed cost (the CLI, imports, engines, state) would otherwise count as
    per-row time, and small tables came out at half the seconds asked for. The probes are large
    enough (200,000 and 1,000,000 rows) for their difference to stand out of the noise."""
    took = {}
    for rows in PROBE_ROWS:
        took[rows] = _load_seconds(work, rows, f"probe-{rows}")
    per_row = max(took[PROBE_ROWS[1]] - took[PROBE_ROWS[0]], 0.05) / (PROBE_ROWS[1] - PROBE_ROWS[0])
    return int(seconds / per_row)


def _load_seconds(work: Path, rows: int, name: str) -> float:
    """`etlctl load` of one table of `rows` rows into a fresh target, less the CLI's own start."""
    names = L.build_source(work / f"{name}.db", 1, rows, prefix="probe")
    config = L.write_config(work / f"{name}.toml", work / f"{name}.db", work / f"{name}-target.db", names)
    took = _timed([L.ETLCTL, "--config", str(config), "load", names[0]], None)
    return took - _timed([L.ETLCTL, "--help"], None)


def _timed(command: list[str], env: dict[str, str] | None) -> float:
    started = time.monotonic()
    proc = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} exited {proc.returncode}: {proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        )
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="gap,makespan,demo,fanout")
    parser.add_argument("--fanout", default="100,1000")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--server-db", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args()
    chosen = args.only.split(",")
    print(
        f"launch benchmarks on {psutil.cpu_count()} cores, load average {psutil.getloadavg()[0]:.1f}",
        flush=True,
    )
    for name in chosen:
        if name == "gap":
            lines = gap(args.repeat)
        elif name == "makespan":
            lines = makespan(args.repeat)
        elif name == "demo":
            lines = demo()
        elif name == "fanout":
            fanout([int(n) for n in args.fanout.split(",")], args.server_db)
            lines = []
        else:
            raise SystemExit(f"unknown benchmark {name!r}")
        for line in lines:
            print(line, flush=True)
    print(f"load average at the end {psutil.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
