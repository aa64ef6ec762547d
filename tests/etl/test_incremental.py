"""Incremental mode: changes arrive once, ties at the watermark are kept, crashes resume cleanly."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest
from sqlalchemy import MetaData, Table, func, insert, select, text

from flows.demo.sample import INCREMENTAL_TABLES, mutate_sample
from flows.etl.batch import run_tables
from flows.etl.step import run_table
from tests.etl.dbs import engine_for, fingerprints

TABLES = sorted(INCREMENTAL_TABLES)


def test_changes_arrive_once_and_a_quiet_rerun_writes_nothing(config, workdir):
    assert all(config.options_for(t).mode == "incremental" for t in TABLES)
    run_tables(config, TABLES)
    source, target = engine_for(workdir / "source.db"), engine_for(workdir / "target.db")
    changed = mutate_sample(f"sqlite:///{workdir / 'source.db'}")
    second = {r.table: r for r in run_tables(config, TABLES)}
    for table in TABLES:
        assert second[table].outcome == "success"
        assert second[table].rows_written == changed[table], table
        assert fingerprints(target)[table] == fingerprints(source)[table], table
    third = run_tables(config, TABLES)
    assert [r.rows_written for r in third] == [0] * len(TABLES)
    assert all(r.rows_read > 0 for r in third)  # the boundary rows are re-read, and left alone
    assert {t: fingerprints(target)[t] for t in TABLES} == {t: fingerprints(source)[t] for t in TABLES}


def test_row_sharing_the_watermark_value_is_not_lost(config, workdir):
    first = run_table(config, "customers")
    mark = first.watermark_after
    source = engine_for(workdir / "source.db")
    customers = Table("customers", MetaData(), autoload_with=source)
    with source.begin() as conn:
        top = conn.execute(select(func.max(customers.c.id))).scalar_one()
        conn.execute(
            insert(customers).values(id=top + 1, name="late arrival", created_at=mark, updated_at=mark)
        )
    second = run_table(config, "customers")
    assert second.watermark_before == mark == second.watermark_after
    assert second.rows_written == 1
    assert fingerprints(engine_for(workdir / "target.db"))["customers"] == fingerprints(source)["customers"]


def test_crash_midway_resumes_from_the_last_committed_chunk(config, workdir):
    table = "events"

    def crash_after_two_chunks(rows_read: int) -> None:
        if rows_read >= 100:
            raise RuntimeError("injected crash")

    small = replace(
        config, overrides={**config.overrides, table: {**config.overrides[table], "chunk_size": 50}}
    )
    with pytest.raises(RuntimeError, match="injected crash"):
        run_table(small, table, on_chunk=crash_after_two_chunks)
    target = engine_for(workdir / "target.db")
    with target.connect() as conn:
        state = conn.execute(
            text("SELECT outcome, watermark, error FROM _etlctl_state WHERE table_name = :t"), {"t": table}
        ).one()
        loaded = conn.execute(text("SELECT count(*) FROM events")).scalar_one()
    assert state.outcome == "failed" and "injected crash" in state.error
    assert loaded == 100
    assert dt.datetime.fromisoformat(state.watermark)
    resumed = run_table(small, table)
    assert resumed.watermark_before == dt.datetime.fromisoformat(state.watermark)
    source = engine_for(workdir / "source.db")
    assert fingerprints(target)[table] == fingerprints(source)[table]
