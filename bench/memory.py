"""Peak memory of one table's load does not grow with the table: 10x the rows, the same peak RSS.

python -m bench.memory [--small 200000] [--large 2000000]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import json, resource, sys
from flows.config import load_config
from flows.etl.step import run_table
result = run_table(load_config(sys.argv[1]), "readings")
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"rows": result.rows_written, "peak_kib": peak}))
"""


def build_source(path: Path, rows: int) -> None:
    """One wide-ish table of `rows` rows, made by SQLite itself so the build costs seconds."""
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE readings (id INTEGER PRIMARY KEY, sensor INTEGER NOT NULL, value REAL,"
            " label TEXT, taken_at DATETIME NOT NULL)"
        )
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
            " INSERT INTO readings SELECT i, i % 97, i * 0.5, printf('sensor reading number %08d', i),"
            " datetime('2024-01-01', printf('+%d seconds', i)) || '.000000' FROM n",
            (rows,),
        )


def peak_rss_kib(rows: int, mode: str = "full", chunk_size: int = 5000) -> int:
    """Peak RSS of a fresh process that loads a `rows`-row table into an empty SQLite target."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        build_source(work / "source.db", rows)
        cursor = '\ncursor = "taken_at"' if mode == "incremental" else ""
        (work / "etlctl.toml").write_text(
            f'[source]\nurl = "sqlite:///{work}/source.db"\n[target]\nurl = "sqlite:///{work}/target.db"\n'
            f'[tables]\nnames = ["readings"]\n[tables.defaults]\nmode = "{mode}"\n'
            f"chunk_size = {chunk_size}{cursor}\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(work / "etlctl.toml")],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        report = json.loads(out.strip().splitlines()[-1])
        assert report["rows"] == rows, report
        return int(report["peak_kib"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=200_000)
    parser.add_argument("--large", type=int, default=2_000_000)
    args = parser.parse_args()
    for mode in ("full", "incremental"):
        small, large = peak_rss_kib(args.small, mode), peak_rss_kib(args.large, mode)
        print(
            f"memory {mode:<11} peak RSS {args.small:>9} rows: {small / 1024:7.1f} MiB   "
            f"{args.large:>9} rows: {large / 1024:7.1f} MiB   ratio {large / small:.2f} "
            f"(rows x{args.large / args.small:.0f})"
        )


if __name__ == "__main__":
    main()
