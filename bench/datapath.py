"""Data path speed: `run_table` against the engine's own copy of the same rows, side by side in one run.

    python -m bench.datapath [--rows 1000000] [--store-sales 288000] [--changed 100000] [--repeat 3]
                             [--no-pg]

Each load also prints the CPU seconds it took in this process (Python and the SQLite library, not
the PostgreSQL server): on a loaded host the wall time says little, the CPU time what one core
would need.

SQLite baseline: `CREATE TABLE ... AS SELECT` over ATTACH. On a fast host that copy takes a
quarter of a second for a million rows, so one sample of either side is mostly noise (page cache,
the first load's lazy imports): the SQLite full loads run `--repeat` times, alternating with the
native copy, each into a fresh file after an `os.sync()` (both sides fsync at commit, and on
ext4 an fsync waits for the writeback of whatever the last copy left dirty), and the medians are
compared. Incremental baseline: the step's own
upsert statement (writer.upsert) run natively from the attached source. PostgreSQL baseline:
`psql -c "\\copy (SELECT ...) TO STDOUT" | psql -c "\\copy ... FROM STDIN"` on the same cluster.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sqlite3
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Column, MetaData, Table, create_engine, text
from sqlalchemy.dialects import sqlite

from bench.datasets import build_narrow, build_store_sales, touch_narrow
from flows.config import load_config
from flows.etl.step import run_table
from flows.etl.writer import upsert
from flows.fleet.processes import free_port
from lab.postgres import start_cluster


def seconds(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def load(work: Path, source: str, target: str, table: str, mode: str = "full") -> float:
    """Seconds for one `run_table` of `table`, with the config a user would write."""
    config = work / f"{table}-{mode}.toml"
    extra = '\ncursor = "taken_at"\nprimary_key = ["id"]' if mode == "incremental" else ""
    config.write_text(
        f'[source]\nurl = "{source}"\n[target]\nurl = "{target}"\n[tables]\nnames = ["{table}"]\n'
        f'[tables.defaults]\nmode = "{mode}"\nchunk_size = 10000{extra}\n'
    )
    cpu = time.process_time()
    took = seconds(lambda: run_table(load_config(config), table))
    print(f"datapath  ({table} {mode}: {time.process_time() - cpu:.2f} s CPU in this process)")
    return took


def native_sqlite(source: Path, target: Path, table: str) -> float:
    with sqlite3.connect(target, isolation_level=None) as conn:
        conn.execute("ATTACH DATABASE ? AS src", (str(source),))
        return seconds(lambda: conn.execute(f"CREATE TABLE {table} AS SELECT * FROM src.{table}"))


def report(name: str, rows: int, step: float, native: float | None, what: str) -> None:
    ratio = f", {step / native:.2f}x {what} ({native:.2f} s)" if native else ""
    print(f"datapath  {name:<28} {rows:>9} rows  {step:6.2f} s  {rows / step:>9,.0f} rows/s{ratio}")


def sqlite_figures(work: Path, rows: int, sales: int, changed: int, repeat: int) -> None:
    source = work / "source.db"
    build_narrow(source, rows)
    build_store_sales(source, sales)
    for table, count in (("narrow", rows), ("store_sales", sales)):
        steps, natives = [], []
        for attempt in range(repeat):
            target = work / f"{table}-{attempt}.db"
            os.sync()  # the writeback of the last copy must not slow the next one's commit
            steps.append(load(work, f"sqlite:///{source}", f"sqlite:///{target}", table))
            os.sync()
            natives.append(native_sqlite(source, work / f"n-{table}-{attempt}.db", table))
        print(f"datapath  ({table}: step {_seconds_list(steps)}, native {_seconds_list(natives)})")
        report(
            f"sqlite->sqlite {table}",
            count,
            statistics.median(steps),
            statistics.median(natives),
            f"native CTAS, medians of {repeat}",
        )
    target = work / "incremental.db"
    load(work, f"sqlite:///{source}", f"sqlite:///{target}", "narrow", "incremental")
    with sqlite3.connect(target) as conn:
        since = conn.execute("SELECT max(taken_at) FROM narrow").fetchone()[0]
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.copy(target, work / "native-incremental.db")
    touch_narrow(source, changed)
    step = load(work, f"sqlite:///{source}", f"sqlite:///{target}", "narrow", "incremental")
    report(
        "sqlite incremental upsert",
        changed,
        step,
        native_upsert(source, work / "native-incremental.db", since),
        "native upsert",
    )


def _seconds_list(figures: list[float]) -> str:
    return " ".join(f"{f:.2f}" for f in figures)


def native_upsert(source: Path, target: Path, since: str) -> float:
    """The changed rows into a temporary table, then writer.upsert's statement, in one transaction."""
    engine = create_engine(f"sqlite:///{target}")
    table = Table("narrow", MetaData(), autoload_with=engine)
    delta = Table("delta", MetaData(schema="temp"), *(Column(c.name, c.type) for c in table.columns))
    names = [c.name for c in table.columns]
    statement = str(upsert(sqlite.dialect(), table, ["id"], names, delta).compile(dialect=sqlite.dialect()))
    with sqlite3.connect(target, isolation_level=None) as conn:
        conn.execute("ATTACH DATABASE ? AS src", (str(source),))

        def work() -> None:
            conn.execute("BEGIN")
            conn.execute("CREATE TEMP TABLE delta AS SELECT * FROM src.narrow WHERE taken_at >= ?", (since,))
            conn.execute(statement)
            conn.execute("COMMIT")

        return seconds(work)


def pg_figures(work: Path, rows: int, repeat: int) -> None:
    os.chmod(work, 0o755)  # the cluster runs as the postgres user
    cluster = start_cluster(work / "pg", free_port(), secrets.token_hex(8))
    try:
        plain = lambda url: url.render_as_string(hide_password=False)  # noqa: E731
        build_narrow(work / "pg-narrow.db", rows)
        into_pg, pg_to_pg, pipes, from_pg = [], [], [], []
        for attempt in range(repeat):  # each load into a fresh database or file: a first load each time
            pg_source = plain(cluster.create_database(f"source{attempt}"))
            pg_target = plain(cluster.create_database(f"target{attempt}"))
            into_pg.append(load(work, f"sqlite:///{work / 'pg-narrow.db'}", pg_source, "narrow"))
            pg_to_pg.append(load(work, pg_source, pg_target, "narrow"))
            pipes.append(psql_pipe(cluster, f"source{attempt}", f"target{attempt}", pg_target))
            from_pg.append(load(work, pg_source, f"sqlite:///{work / f'from-pg-{attempt}.db'}", "narrow"))
        print(
            f"datapath  (sqlite->postgresql {_seconds_list(into_pg)}; postgresql->postgresql"
            f" {_seconds_list(pg_to_pg)}, psql pipe {_seconds_list(pipes)};"
            f" postgresql->sqlite {_seconds_list(from_pg)})"
        )
        median = statistics.median
        report(f"sqlite->postgresql narrow, median of {repeat}", rows, median(into_pg), None, "")
        report("postgresql->postgresql narrow", rows, median(pg_to_pg), median(pipes), "psql \\copy pipe")
        report(f"postgresql->sqlite narrow, median of {repeat}", rows, median(from_pg), None, "")
    finally:
        cluster.stop()


def psql_pipe(cluster, source: str, target: str, target_url: str) -> float:
    with create_engine(target_url).begin() as conn:
        conn.execute(text("CREATE TABLE narrow_native (LIKE narrow)"))
    env = {**os.environ, "PGPASSWORD": cluster.password}
    base = f"psql -h {cluster.host} -p {cluster.port} -U etl -q"
    pipe = (
        f"{base} -d {source} -c '\\copy (SELECT * FROM narrow) TO STDOUT'"
        f" | {base} -d {target} -c '\\copy narrow_native FROM STDIN'"
    )
    return seconds(lambda: subprocess.run(pipe, shell=True, check=True, env=env))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--store-sales", type=int, default=288_000)
    parser.add_argument("--changed", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-pg", action="store_true")
    args = parser.parse_args()
    print(f"datapath  load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        sqlite_figures(Path(tmp), args.rows, args.store_sales, args.changed, args.repeat)
        if not args.no_pg:
            pg_figures(Path(tmp), args.rows, args.repeat)


if __name__ == "__main__":
    main()
