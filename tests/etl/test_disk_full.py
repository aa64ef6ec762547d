"""Disk full on the target: a SQLite target on a small tmpfs, filled up after a first load so that
the next full load cannot fit. The load fails by name, the target keeps its previous rows and
state, and once space is freed the next load brings the target up to the source."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import text

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
from tests.etl.dbs import engine_for, fingerprints
from tests.every_table import every_table_differences

ETLCTL = str(Path(sys.executable).with_name("etlctl"))


def test_a_full_load_that_cannot_fit_fails_by_name_and_keeps_the_old_rows(tmp_path):
    with small_disk(tmp_path / "disk", "4m") as disk:
        source, target = tmp_path / "source.db", disk / "target.db"
        make_source(source)
        config = tmp_path / "etlctl.toml"
        config.write_text(
            f'[source]\nurl = "sqlite:///{source}"\n[target]\nurl = "sqlite:///{target}"\n'
            f'[tables]\nnames = ["{TABLE}"]\n',
            encoding="utf-8",
        )
        env = {**os.environ, "ETLCTL_CONFIG": str(config), "ETLCTL_STATE_DIR": str(tmp_path / "state")}

        def load() -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [ETLCTL, "load", TABLE], env=env, capture_output=True, text=True, check=False
            )

        first = load()
        assert first.returncode == 0, first.stdout + first.stderr
        before = fingerprints(engine_for(target))[TABLE]
        (watermark, written, outcome, _), history = table_state(engine_for(target))
        assert (watermark, written, outcome, history) == (None, ROWS, "success", ["success"])
        change_source(source)
        filler = fill(disk)

        assert_failed_by_name(load())
        assert fingerprints(engine_for(target))[TABLE] == before  # the previous rows, unchanged
        (watermark, written, outcome, error), history = table_state(engine_for(target))
        assert (watermark, written, outcome) == (None, ROWS, "failed") and "disk full" in error
        assert history == ["failed", "success"]
        with engine_for(target).connect() as conn:
            assert conn.execute(text("PRAGMA integrity_check")).scalar_one() == "ok"

        filler.unlink()
        again = load()
        assert again.returncode == 0, again.stdout + again.stderr
        assert fingerprints(engine_for(target))[TABLE] != before
        assert table_state(engine_for(target))[0][2] == "success"
        assert every_table_differences(config) == []
