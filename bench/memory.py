"""Peak memory of one table's load does not grow with the table: 10x the rows, the same peak RSS.

python -m bench.memory [--small 200000] [--large 2000000] [--pg]

`--pg` also measures the three paths through PostgreSQL (SQLite -> PostgreSQL, PostgreSQL ->
PostgreSQL, PostgreSQL -> SQLite) on a throwaway cluster, each load in a fresh process.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

from flows.fleet.processes import free_port
from lab.memory import CHILD, build_source, peak_rss_kib
from lab.postgres import start_cluster

PG_PATHS = ("sqlite->postgresql", "postgresql->postgresql", "postgresql->sqlite")


def child_peak_kib(work: Path, source: str, target: str) -> int:
    """Peak RSS of a fresh process running one full load of `readings` from `source` to `target`."""
    config = work / f"memory-{secrets.token_hex(3)}.toml"
    config.write_text(
        f'[source]\nurl = "{source}"\n[target]\nurl = "{target}"\n'
        '[tables]\nnames = ["readings"]\n[tables.defaults]\nchunk_size = 5000\n'
    )
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(config)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_kib"]


def pg_peaks_kib(rows: int) -> dict[str, int]:
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)  # the cluster runs as the postgres user
        cluster = start_cluster(work / "pg", free_port(), secrets.token_hex(8))
        try:
            plain = lambda url: url.render_as_string(hide_password=False)  # noqa: E731
            first, second = plain(cluster.create_database("a")), plain(cluster.create_database("b"))
            build_source(work / "source.db", rows)
            return {
                PG_PATHS[0]: child_peak_kib(work, f"sqlite:///{work / 'source.db'}", first),
                PG_PATHS[1]: child_peak_kib(work, first, second),
                PG_PATHS[2]: child_peak_kib(work, first, f"sqlite:///{work / 'target.db'}"),
            }
        finally:
            cluster.stop()


def line(what: str, small_rows: int, small: int, large_rows: int, large: int) -> str:
    return (
        f"memory {what:<22} peak RSS {small_rows:>9} rows: {small / 1024:7.1f} MiB   "
        f"{large_rows:>9} rows: {large / 1024:7.1f} MiB   ratio {large / small:.2f} "
        f"(rows x{large_rows / small_rows:.0f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=200_000)
    parser.add_argument("--large", type=int, default=2_000_000)
    parser.add_argument("--pg", action="store_true")
    args = parser.parse_args()
    for mode in ("full", "incremental"):
        small, large = peak_rss_kib(args.small, mode), peak_rss_kib(args.large, mode)
        print(line(mode, args.small, small, args.large, large))
    if args.pg:
        small, large = pg_peaks_kib(args.small), pg_peaks_kib(args.large)
        for path in PG_PATHS:
            print(line(path, args.small, small[path], args.large, large[path]))


if __name__ == "__main__":
    main()
