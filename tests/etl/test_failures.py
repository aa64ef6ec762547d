"""A full load that dies midway: readers keep seeing the old table, and nothing is left behind."""

from __future__ import annotations

import signal
import subprocess
import sys
from dataclasses import replace

import pytest
from sqlalchemy import text

from flows.demo.sample import mutate_sample
from flows.etl.step import run_table
from tests.etl.dbs import engine_for, fingerprints

TABLE = "measurements"


def _visible_tables(path) -> set[str]:
    with engine_for(path).connect() as conn:
        return set(conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'table'")).scalars())


def test_failure_midway_leaves_the_previous_table_for_readers(config, workdir):
    run_table(config, TABLE)
    target_path = workdir / "target.db"
    before = fingerprints(engine_for(target_path))[TABLE]
    with engine_for(workdir / "source.db").begin() as conn:
        conn.execute(text("UPDATE measurements SET sensor_id = sensor_id + 1 WHERE id % 7 = 0"))
    small = replace(config, defaults=replace(config.defaults, chunk_size=10_000))
    seen_by_reader: list[tuple[int, str]] = []

    def read_then_fail(rows_read: int) -> None:
        seen_by_reader.append(fingerprints(engine_for(target_path))[TABLE])
        assert not any(t.startswith("_etlctl_stage") for t in _visible_tables(target_path))
        if rows_read >= 50_000:
            raise RuntimeError("injected failure after 5 chunks")

    with pytest.raises(RuntimeError, match="injected failure"):
        run_table(small, TABLE, on_chunk=read_then_fail)
    assert seen_by_reader == [before] * 5
    assert fingerprints(engine_for(target_path))[TABLE] == before
    assert not any(t.startswith("_etlctl_stage") for t in _visible_tables(target_path))
    with engine_for(target_path).connect() as conn:
        outcome, error = conn.execute(
            text("SELECT outcome, error FROM _etlctl_state WHERE table_name = :t"), {"t": TABLE}
        ).one()
    assert outcome == "failed" and "injected failure" in error


def test_process_killed_midway_leaves_the_target_intact(config, workdir):
    run_table(config, TABLE)
    target_path = workdir / "target.db"
    before = fingerprints(engine_for(target_path))[TABLE]
    mutate_sample(f"sqlite:///{workdir / 'source.db'}")
    with engine_for(workdir / "source.db").begin() as conn:
        conn.execute(text("DELETE FROM measurements WHERE id % 3 = 0"))
    script = (
        "import os, signal, sys\n"
        "from dataclasses import replace\n"
        "from flows.config import load_config\n"
        "from flows.etl.step import run_table\n"
        "config = load_config(sys.argv[1])\n"
        "config = replace(config, defaults=replace(config.defaults, chunk_size=10_000))\n"
        "def die(rows):\n"
        "    if rows >= 40_000:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "run_table(config, 'measurements', on_chunk=die)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(config.path)], check=False)
    assert proc.returncode == -signal.SIGKILL
    assert fingerprints(engine_for(target_path))[TABLE] == before
    assert not any(t.startswith("_etlctl_stage") for t in _visible_tables(target_path))
    with engine_for(target_path).connect() as conn:
        assert conn.execute(text("PRAGMA integrity_check")).scalar_one() == "ok"
    rerun = run_table(config, TABLE)
    assert rerun.outcome == "success"
    source = fingerprints(engine_for(workdir / "source.db"))[TABLE]
    assert fingerprints(engine_for(target_path))[TABLE] == source != before
