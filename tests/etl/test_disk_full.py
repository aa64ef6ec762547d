"""Disk full on the target: a SQLite target on a small tmpfs, filled up after a first load so that
the next full load cannot fit. The load fails by name, the target keeps its previous rows and
state, and once space is freed the next load brings the target up to the source."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.etl.dbs import engine_for, fingerprints

ETLCTL = str(Path(sys.executable).with_name("etlctl"))
TABLE = "wide"
ROWS = 10_000  # about 2 MB in SQLite
DISK = "4m"
LEFT_FREE = 600 * 1024  # bytes left after the filler: far less than the table needs


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs mounted under the test's temp dir, unmounted afterwards."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK},mode=0700", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _source(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(f"CREATE TABLE {TABLE} (id INTEGER PRIMARY KEY, label TEXT NOT NULL, amount REAL)")
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
            f" INSERT INTO {TABLE} SELECT i, printf('%08d ', i) || hex(randomblob(80)), i * 0.5 FROM n",
            (ROWS,),
        )


def _state(target: Path) -> tuple:
    with engine_for(target).connect() as conn:
        state = conn.execute(
            text("SELECT watermark, rows_written, outcome, error FROM _etlctl_state WHERE table_name = :t"),
            {"t": TABLE},
        ).one()
        runs = conn.execute(
            text("SELECT outcome FROM _etlctl_runs WHERE table_name = :t"), {"t": TABLE}
        ).all()
    return tuple(state), sorted(r.outcome for r in runs)


def test_a_full_load_that_cannot_fit_fails_by_name_and_keeps_the_old_rows(tmp_path, small_disk):
    source, target = tmp_path / "source.db", small_disk / "target.db"
    _source(source)
    config = tmp_path / "etlctl.toml"
    config.write_text(
        f'[source]\nurl = "sqlite:///{source}"\n[target]\nurl = "sqlite:///{target}"\n'
        f'[tables]\nnames = ["{TABLE}"]\n',
        encoding="utf-8",
    )
    env = {**os.environ, "ETLCTL_CONFIG": str(config), "ETLCTL_STATE_DIR": str(tmp_path / "state")}

    def load() -> subprocess.CompletedProcess[str]:
        return subprocess.run([ETLCTL, "load", TABLE], env=env, capture_output=True, text=True, check=False)

    first = load()
    assert first.returncode == 0, first.stdout + first.stderr
    before = fingerprints(engine_for(target))[TABLE]
    (watermark, written, outcome, _), history = _state(target)
    assert (watermark, written, outcome, history) == (None, ROWS, "success", ["success"])
    with sqlite3.connect(source) as conn:  # the source moves on: the old rows must now differ
        conn.execute(f"UPDATE {TABLE} SET amount = amount + 1 WHERE id % 3 = 0")
    filler = small_disk / "filler"
    with filler.open("wb") as out:
        out.write(b"\0" * (shutil.disk_usage(small_disk).free - LEFT_FREE))

    full = load()
    assert full.returncode == 1, full.stdout + full.stderr
    lines = [line for line in full.stdout.splitlines() if "disk full" in line]
    assert len(lines) == 1 and lines[0].split()[:3] == [TABLE, "full", "failed"], full.stdout
    assert f"disk full while loading {TABLE!r} into the target" in lines[0]
    assert f"failed: {TABLE}" in full.stdout
    assert fingerprints(engine_for(target))[TABLE] == before  # the previous rows, unchanged
    (watermark, written, outcome, error), history = _state(target)
    assert (watermark, written, outcome) == (None, ROWS, "failed") and "disk full" in error
    assert history == ["failed", "success"]
    with engine_for(target).connect() as conn:
        assert conn.execute(text("PRAGMA integrity_check")).scalar_one() == "ok"

    filler.unlink()
    again = load()
    assert again.returncode == 0, again.stdout + again.stderr
    after = fingerprints(engine_for(target))[TABLE]
    assert after == fingerprints(engine_for(source))[TABLE] != before
    assert _state(target)[0][2] == "success"
