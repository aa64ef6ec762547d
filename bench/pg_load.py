"""PostgreSQL load speed: the table step (COPY straight into the target) against a plain SQLAlchemy
executemany INSERT of the same rows, timed in the same process on the same throwaway cluster.

    python -m bench.pg_load [--rows 500000]
"""

from __future__ import annotations

import argparse
import os
import secrets
import tempfile
import time
from pathlib import Path

from sqlalchemy import Column, MetaData, Table, create_engine, insert, select

from flows.config import load_config
from flows.demo.sample import build_sample
from flows.etl.step import run_table
from flows.fleet.processes import free_port
from lab.postgres import start_cluster


def measure(rows: int) -> tuple[float, float]:
    """Seconds for (the step, the executemany baseline) to load the `measurements` table."""
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        os.chmod(tmp, 0o755)  # the cluster runs as the postgres user
        cluster = start_cluster(Path(tmp) / "pg", free_port(), secrets.token_hex(8))
        try:
            source, target = cluster.create_database("source"), cluster.create_database("target")
            build_sample(source, big_rows=rows)
            plain = lambda url: url.render_as_string(hide_password=False)  # noqa: E731
            config_path = Path(tmp) / "etlctl.toml"
            config_path.write_text(
                f'[source]\nurl = "{plain(source)}"\n[target]\nurl = "{plain(target)}"\n'
                '[tables]\nnames = ["measurements"]\n[tables.defaults]\nchunk_size = 10000\n'
            )
            started = time.perf_counter()
            run_table(load_config(config_path), "measurements")
            step = time.perf_counter() - started
            started = time.perf_counter()
            _executemany_copy(create_engine(source), create_engine(target))
            baseline = time.perf_counter() - started
            return step, baseline
        finally:
            cluster.stop()


def _executemany_copy(source, target) -> None:
    table = Table("measurements", MetaData(), autoload_with=source)
    copy = Table("measurements_baseline", MetaData(), *(Column(c.name, c.type) for c in table.columns))
    with target.begin() as conn:
        copy.create(conn)
    with source.connect() as src, target.begin() as tgt:
        result = src.execution_options(yield_per=10_000).execute(select(table))
        for part in result.partitions():
            tgt.execute(insert(copy), [row._asdict() for row in part])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000)
    args = parser.parse_args()
    step, baseline = measure(args.rows)
    print(
        f"pg load   {args.rows} rows: step (COPY + swap) {step:.1f} s, executemany baseline "
        f"{baseline:.1f} s, ratio step/baseline {step / baseline:.2f}"
    )


if __name__ == "__main__":
    main()
