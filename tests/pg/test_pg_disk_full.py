"""Disk full on a PostgreSQL target: the table lives in a tablespace on a small tmpfs, filled up
after a first load so that the next full load (its new rows written beside the old ones until it
commits) cannot fit. The load fails naming the table (SQLSTATE 53100, DiskFullError), the target
keeps its old rows, watermark and history, and once space is freed the next load equals the source."""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from sqlalchemy import create_engine, text

from tests.disk_full_check import (
    ROWS,
    TABLE,
    assert_failed_by_name,
    change_source,
    fill,
    make_source,
    small_disk,
    table_state,
)
from tests.every_table import every_table_differences
from tests.pg.conftest import config_url

ETLCTL = str(Path(sys.executable).with_name("etlctl"))


def test_a_full_load_that_cannot_fit_its_tablespace_fails_by_name_and_keeps_the_old_rows(
    pg_cluster, tmp_path
):
    tag = secrets.token_hex(4)
    database, space = f"tgt_{tag}", f"small_{tag}"
    pg_cluster.create_database(database)
    target = create_engine(pg_cluster.url(database), isolation_level="AUTOCOMMIT")
    owner = str(pwd.getpwnam("postgres").pw_uid)
    reachable = Path(tempfile.mkdtemp(prefix="etlctl-ts-", dir="/tmp"))  # pytest's tmp_path is 0700
    reachable.chmod(0o755)
    with small_disk(reachable / "disk", "6m", owner=owner) as disk:
        (disk / "ts").mkdir()
        os.chown(disk / "ts", int(owner), int(owner))
        source = tmp_path / "source.db"
        make_source(source)
        config = tmp_path / "etlctl.toml"
        config.write_text(
            f'[source]\nurl = "sqlite:///{source}"\n[target]\nurl = "{config_url(pg_cluster, database)}"\n'
            f'[tables]\nnames = ["{TABLE}"]\n',
            encoding="utf-8",
        )
        env = {**os.environ, "ETLCTL_CONFIG": str(config), "ETLCTL_STATE_DIR": str(tmp_path / "state")}

        def load() -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [ETLCTL, "load", TABLE], env=env, capture_output=True, text=True, check=False
            )

        def rows() -> tuple:
            with target.connect() as conn:
                return tuple(conn.execute(text(f"SELECT count(*), sum(amount) FROM {TABLE}")).one())

        try:
            first = load()
            assert first.returncode == 0, first.stdout + first.stderr
            with target.connect() as conn:  # the table (not etlctl's state) moves to the small disk
                conn.execute(text(f"CREATE TABLESPACE {space} LOCATION '{disk / 'ts'}'"))
                conn.execute(text(f"ALTER TABLE {TABLE} SET TABLESPACE {space}"))
                where = conn.execute(
                    text("SELECT tablespace FROM pg_tables WHERE tablename = :t"), {"t": TABLE}
                )
                assert where.scalar_one() == space
            before = rows()
            (watermark, written, outcome, _), history = table_state(target)
            assert (watermark, written, outcome, history) == (None, ROWS, "success", ["success"])
            change_source(source)
            filler = fill(disk)

            full = load()
            assert_failed_by_name(full)
            assert "53100" in full.stdout or "could not extend" in full.stdout, full.stdout
            assert rows() == before  # the previous rows, unchanged
            (watermark, written, outcome, error), history = table_state(target)
            assert (watermark, written, outcome) == (None, 0, "failed") and "disk full" in error  # wrote none
            assert history == ["failed", "success"]

            filler.unlink()
            again = load()
            assert again.returncode == 0, again.stdout + again.stderr
            assert rows() != before
            assert table_state(target)[0][2] == "success"
            assert every_table_differences(config) == []
        finally:
            with target.connect() as conn:
                conn.execute(text(f"DROP TABLE IF EXISTS {TABLE}"))
                conn.execute(text(f"DROP TABLESPACE IF EXISTS {space}"))
            target.dispose()
    shutil.rmtree(reachable, ignore_errors=True)
