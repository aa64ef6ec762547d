"""The fast paths of the table step, each compared with the source independently: SQLite copying an
attached SQLite file itself, and the driver-level rows for a table it cannot copy (WITHOUT ROWID)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from flows.config import load_config
from flows.etl.attach import attachable
from flows.etl.engines import make_engine
from flows.etl.fingerprint import fingerprint
from flows.etl.plan import reflect_table
from flows.etl.step import run_table

COLUMNS = (
    "id INTEGER NOT NULL, amount DECIMAL(9, 2), note TEXT, data BLOB, at DATETIME, ratio REAL, "
    '"odd ""name"" %s" TEXT'
)
ROWS = [
    (1, 12.5, "grüße, 東京 🚀", b"\x00\xff\x01", "2024-02-29 23:59:59.999999", 0.1, "x"),
    (2, None, None, None, None, None, None),
    (3, -0.01, "", b"", "1970-01-01 00:00:00.000000", -1e300, "%d"),
]


def _source(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"CREATE TABLE mixed ({COLUMNS}, PRIMARY KEY (id))")
        conn.execute(f"CREATE TABLE keyed ({COLUMNS}, PRIMARY KEY (id)) WITHOUT ROWID")
        conn.execute("CREATE TABLE side (n INTEGER)")
        for table in ("mixed", "keyed"):
            conn.executemany(f"INSERT INTO {table} VALUES (?, ?, ?, ?, ?, ?, ?)", ROWS)
            conn.execute(
                f'INSERT INTO {table} SELECT id + 10, amount, note, data, at, ratio, "odd ""name"" %s" '
                f"FROM {table}"
            )


def test_both_paths_equal_the_source_and_the_source_stays_writable(tmp_path: Path) -> None:
    _source(tmp_path / "source.db")
    (tmp_path / "etlctl.toml").write_text(
        f'[source]\nurl = "sqlite:///{tmp_path}/source.db"\n[target]\nurl = "sqlite:///{tmp_path}/target.db"\n'
        '[tables]\nnames = ["mixed", "keyed"]\n[tables.defaults]\nchunk_size = 2\n'
    )
    config = load_config(tmp_path / "etlctl.toml")
    source, target = make_engine(config.source_url, "source"), make_engine(config.target_url, "target")
    with source.connect() as src, target.connect() as tgt:
        assert attachable(src, tgt, reflect_table(src, "mixed", None), None)
        assert not attachable(src, tgt, reflect_table(src, "keyed", None), None)

    progress: list[int] = []

    def write_to_source(rows_read: int) -> None:
        """The operational database keeps taking writes while a load reads it (no waiting)."""
        progress.append(rows_read)
        with sqlite3.connect(tmp_path / "source.db", timeout=0) as conn:
            conn.execute("INSERT INTO side VALUES (?)", (rows_read,))

    for table in ("mixed", "keyed"):
        result = run_table(config, table, on_chunk=write_to_source)
        assert result.rows_written == len(ROWS) * 2
        assert fingerprint(target, table) == fingerprint(source, table)
    assert progress == [2, 4, 6] * 2  # chunk by chunk on both paths
    again = run_table(config, "mixed")  # a rerun replaces rather than appends
    assert again.rows_written == len(ROWS) * 2 and fingerprint(target, "mixed") == fingerprint(
        source, "mixed"
    )
