"""Progress rows in the target: written while a table loads, read back per batch, never fatal."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import make_url

from flows.etl.progress import ProgressRecorder, rows_reader
from flows.etl.step import run_table
from tests.etl.conftest import BIG_ROWS


def test_a_loading_table_leaves_its_rows_read_for_the_orchestrator(config):
    record = ProgressRecorder(config, "measurements", "b1", every=0)
    chunks: list[int] = []

    def hook(rows: int) -> None:
        chunks.append(rows)
        record(rows)

    try:
        run_table(config, "measurements", "b1", on_chunk=hook)
    finally:
        record.close()
    assert len(chunks) > 1 and chunks[-1] == BIG_ROWS
    with rows_reader(config, "b1") as rows:
        assert rows() == {"measurements": (BIG_ROWS, rows()["measurements"][1])}
        assert rows()["measurements"][1] > 0
    with rows_reader(config, "another batch") as rows:
        assert rows() == {}


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
