"""Peak memory of one table's load, measured in a fresh process: for bench/memory.py and
tests/etl/test_memory.py, which both check that it does not grow with the table.

    peak_rss_kib(200_000)                   # KiB at peak, loading 200k rows SQLite -> SQLite
    peak_rss_kib(200_000, "incremental")    # the same through the incremental (upsert) path
"""

from __future__ import annotations

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
