"""What the disk-full tests share (SQLite in tests/etl, PostgreSQL in tests/pg): a small tmpfs, a
source table too big to load twice into it, the target's state for that table, and a filler that
leaves too little room for the next load."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

TABLE = "wide"
ROWS = 10_000  # about 2 MB in SQLite and in PostgreSQL
LEFT_FREE = 600 * 1024  # bytes left after the filler: far less than the table needs


@contextmanager
def small_disk(where: Path, size: str, owner: str | None = None) -> Iterator[Path]:
    """A tmpfs of `size` mounted at `where` (owned by user `owner` if given), unmounted afterwards."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    where.mkdir()
    options = f"size={size},mode=0700"
    if owner:
        options += f",uid={owner},gid={owner}"
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def make_source(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(f"CREATE TABLE {TABLE} (id INTEGER PRIMARY KEY, label TEXT NOT NULL, amount REAL)")
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
            f" INSERT INTO {TABLE} SELECT i, printf('%08d ', i) || hex(randomblob(80)), i * 0.5 FROM n",
            (ROWS,),
        )


def change_source(path: Path) -> None:
    """The source moves on: the target's old rows must now differ from it."""
    with sqlite3.connect(path) as conn:
        conn.execute(f"UPDATE {TABLE} SET amount = amount + 1 WHERE id % 3 = 0")


def fill(disk: Path) -> Path:
    """A file that takes all but LEFT_FREE bytes of the disk."""
    filler = disk / "filler"
    with filler.open("wb") as out:
        out.write(b"\0" * (shutil.disk_usage(disk).free - LEFT_FREE))
    return filler


def table_state(target: Engine) -> tuple:
    """((watermark, rows_written, outcome, error), sorted outcomes of the table's runs)."""
    with target.connect() as conn:
        state = conn.execute(
            text("SELECT watermark, rows_written, outcome, error FROM _etlctl_state WHERE table_name = :t"),
            {"t": TABLE},
        ).one()
        runs = conn.execute(
            text("SELECT outcome FROM _etlctl_runs WHERE table_name = :t"), {"t": TABLE}
        ).all()
    return tuple(state), sorted(r.outcome for r in runs)


def assert_failed_by_name(proc: subprocess.CompletedProcess[str]) -> None:
    """Exit 1 and one line naming the table and the full disk."""
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if "disk full" in line]
    assert len(lines) == 1 and lines[0].split()[:3] == [TABLE, "full", "failed"], proc.stdout
    assert f"disk full while loading {TABLE!r} into the target" in lines[0]
    assert f"failed: {TABLE}" in proc.stdout
