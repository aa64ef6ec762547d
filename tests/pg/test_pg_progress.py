"""Progress rows on a PostgreSQL target: the table flow's writes and the orchestrator's read."""

from __future__ import annotations

import secrets
from itertools import pairwise

from sqlalchemy import create_engine

from flows.config import load_config
from flows.etl.progress import ProgressRecorder, rows_reader
from flows.etl.step import run_table
from tests.pg.conftest import config_url

ROWS = 5_000


def test_a_table_loading_into_postgresql_leaves_its_rows_for_the_orchestrator(pg_cluster, tmp_path):
    tag = secrets.token_hex(4)
    source = pg_cluster.create_database(f"src_{tag}")
    pg_cluster.create_database(f"tgt_{tag}")
    with create_engine(source).begin() as conn:
        conn.exec_driver_sql("CREATE TABLE items (id integer PRIMARY KEY, name text)")
        conn.exec_driver_sql(
            f"INSERT INTO items SELECT g, repeat('n', 200) || g FROM generate_series(1, {ROWS}) g"
        )
    path = tmp_path / "etlctl.toml"
    path.write_text(
        f'[source]\nurl = "{config_url(pg_cluster, f"src_{tag}")}"\n'
        f'[target]\nurl = "{config_url(pg_cluster, f"tgt_{tag}")}"\n'
        '[tables]\nnames = ["items"]\n[tables.defaults]\nchunk_size = 1000\n',
        encoding="utf-8",
    )
    config = load_config(path)
    record = ProgressRecorder(config, "items", "b1", every=0)
    seen: list[int] = []
    try:
        run_table(config, "items", "b1", on_chunk=lambda rows: (seen.append(rows), record(rows)))
    finally:
        record.close()
    # PostgreSQL to PostgreSQL pipes COPY blocks of 256 KB: a report at a block's end, once at
    # least a chunk's rows have passed since the last one (1 MB of rows here: several reports).
    assert len(seen) > 1 and seen[-1] == ROWS, seen
    assert all(later - earlier >= 1000 for earlier, later in pairwise(seen[:-1])), seen
    with rows_reader(config, "b1") as rows:
        read, rate = rows()["items"]
    assert read == ROWS and rate >= 0
