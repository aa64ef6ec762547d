"""Progress rows in the target: written while a table loads, read back per batch, never fatal."""

from __future__ import annotations

import time
from dataclasses import replace

from sqlalchemy import make_url

from flows.etl.engines import SQLITE_BUSY_SECONDS
from flows.etl.fingerprint import fingerprint
from flows.etl.progress import ProgressRecorder, rows_reader
from flows.etl.step import run_table
from tests.etl.dbs import engine_for


def test_a_loading_table_leaves_its_rows_read_for_the_orchestrator(config):
    # An incremental table commits chunk by chunk: its progress is written between them.
    small = replace(config, defaults=replace(config.defaults, chunk_size=100))
    record = ProgressRecorder(small, "orders", "b1", every=0)
    chunks: list[int] = []

    def hook(rows: int) -> None:
        chunks.append(rows)
        record(rows)

    try:
        result = run_table(small, "orders", "b1", on_chunk=hook)
    finally:
        record.close()
    assert len(chunks) > 1 and chunks[-1] == result.rows_read
    with rows_reader(config, "b1") as rows:
        assert rows() == {"orders": (result.rows_read, rows()["orders"][1])}
        assert rows()["orders"][1] > 0
    with rows_reader(config, "another batch") as rows:
        assert rows() == {}


def test_progress_never_waits_for_the_write_lock_its_own_load_holds(config, workdir):
    """A SQLite-to-SQLite full load copies in one transaction: a progress write from inside it used
    to wait the whole busy timeout (300 s) for its own lock, at every chunk."""
    record = ProgressRecorder(config, "measurements", "b4", every=0)
    started = time.monotonic()
    try:
        run_table(config, "measurements", "b4", on_chunk=record)
    finally:
        record.close()
    assert time.monotonic() - started < SQLITE_BUSY_SECONDS / 10
    source, target = engine_for(workdir / "source.db"), engine_for(workdir / "target.db")
    assert fingerprint(target, "measurements") == fingerprint(source, "measurements")


def test_progress_is_throttled_and_a_broken_target_never_fails_the_load(config, tmp_path):
    record = ProgressRecorder(config, "orders", "b2", every=3600)
    record(10)
    record(20)  # within the hour: not written
    record.close()
    with rows_reader(config, "b2") as rows:
        assert rows()["orders"][0] == 10
    broken = replace(config, target_url=make_url(f"sqlite:///{tmp_path / 'missing' / 'dir' / 't.db'}"))
    silent = ProgressRecorder(broken, "orders", "b3", every=0)
    silent(1)
    silent.close()
