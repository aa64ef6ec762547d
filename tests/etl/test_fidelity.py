"""SQLite -> SQLite: every value arrives as it was stored, whatever its declared type says, checked
by `typeof()` and `quote()` (tests/fidelity.py); an incremental key that is not unique fails the
table and changes nothing; config mistakes that used to pass `config check` are refused."""

from __future__ import annotations

import sqlite3

import pytest

from flows.config import load_config
from flows.etl.step import run_table
from tests.etl.dbs import engine_for, fingerprints
from tests.etl.test_bad_input import _urls, _write, etlctl
from tests.fidelity import differences

# Values SQLite keeps although they do not match the declared type, and values that SQLAlchemy's
# own type processing used to reformat or choke on ("must be real number, not str",
# "memoryview: a bytes-like object is required").
ODD = [
    (1, "abc", 1.5, "12,50", b"\x00\xff", "2024-01-01 10:00:00", "2024-01-01", '{"a":1,  "b":null}', 2, "x"),
    (
        2,
        2**63 - 1,
        float("inf"),
        1.23456789012345678,
        "text in a blob",
        "yesterday",
        20240101,
        "null",
        0,
        b"\x01",
    ),
    (3, -(2**63), -0.0, "NaN", None, 1700000000, "2024-02-30", "not json", "yes", 7),
    (4, 1e300, "NaN", "100000000000000000000", b"", "2024-01-01T10:00:00+02:00", None, None, None, None),
    (5, None, None, None, None, None, None, None, None, None),
]
COLUMNS = (
    "id INTEGER PRIMARY KEY, i INTEGER, r REAL, n NUMERIC(12, 2), bl BLOB, ts DATETIME, d DATE,"
    " j JSON, bo BOOLEAN, u"
)


@pytest.mark.parametrize("mode", ["full", "incremental"])
def test_sqlite_values_arrive_as_they_were_stored(workdir, mode):
    with sqlite3.connect(workdir / "source.db") as conn:
        conn.execute(f"CREATE TABLE odd ({COLUMNS}, g TEXT GENERATED ALWAYS AS (i || '!') VIRTUAL)")
        conn.executemany(
            "INSERT INTO odd (id, i, r, n, bl, ts, d, j, bo, u) VALUES (?,?,?,?,?,?,?,?,?,?)", ODD
        )
    options = (
        '[tables.defaults]\nmode = "incremental"\ncursor = "id"\nchunk_size = 2\n'
        if mode == "incremental"
        else ""
    )
    path = _write(workdir, _urls(workdir) + '[tables]\nnames = ["odd"]\n' + options)
    assert etlctl("--config", path, "config", "check").returncode == 0
    assert run_table(load_config(path), "odd").rows_written == len(ODD)
    assert differences(engine_for(workdir / "source.db"), engine_for(workdir / "target.db"), "odd") == []


def test_duplicate_incremental_keys_fail_the_table_and_change_nothing(workdir):
    with sqlite3.connect(workdir / "source.db") as conn:
        conn.execute("CREATE TABLE ev_dups (code TEXT, seq INTEGER, note TEXT)")
        conn.execute("INSERT INTO ev_dups VALUES ('a', 1, 'x'), ('b', 2, 'y'), ('c', 3, 'z')")
    body = '[tables]\nnames = ["ev_dups"]\n[table.ev_dups]\nmode = "incremental"\ncursor = "seq"\n'
    path = _write(workdir, _urls(workdir) + body + 'primary_key = "code"\nchunk_size = 2\n')
    assert etlctl("--config", path, "load").returncode == 0
    loaded = fingerprints(engine_for(workdir / "target.db"))
    # Read from seq 3 in chunks of 2: [c3, b4] [d5, c6] [e7, e8]. 'b' repeats a row loaded before,
    # 'c' repeats across chunks, 'e' within one chunk.
    with sqlite3.connect(workdir / "source.db") as conn:
        conn.execute(
            "INSERT INTO ev_dups VALUES ('b', 4, 'y2'), ('d', 5, 'w'), ('c', 6, 'z2'),"
            " ('e', 7, 'v'), ('e', 8, 'v2')"
        )
    check = etlctl("--config", path, "config", "check")
    assert check.returncode == 2
    (line,) = check.stderr.strip().splitlines()
    assert "primary_key (code) is not unique" in line, line
    assert "e.g. 'b' (2 rows), 'c' (2 rows), 'e' (2 rows);" in line, line
    load = etlctl("--config", path, "load")
    assert load.returncode == 1 and "'b' (2 rows)" in load.stdout
    assert fingerprints(engine_for(workdir / "target.db")) == loaded
    with engine_for(workdir / "target.db").connect() as conn:
        state = conn.exec_driver_sql("SELECT outcome, rows_written FROM _etlctl_runs ORDER BY id").all()
    assert [tuple(r) for r in state] == [("success", 3), ("failed", 0)]


def test_a_declared_unique_key_needs_no_scan_and_loads(workdir):
    with sqlite3.connect(workdir / "source.db") as conn:
        conn.execute("CREATE TABLE tags (code TEXT UNIQUE, seq INTEGER)")
        conn.execute("INSERT INTO tags VALUES ('a', 1), ('b', 2)")
    body = '[tables]\nnames = ["tags"]\n[table.tags]\nmode = "incremental"\ncursor = "seq"\n'
    body += 'primary_key = "code"\n'
    path = _write(workdir, _urls(workdir) + body)
    assert etlctl("--config", path, "load").returncode == 0
    assert (
        differences(engine_for(workdir / "source.db"), engine_for(workdir / "target.db"), "tags", "code")
        == []
    )


CONFIG_CASES = {
    "target schema missing": ('[target]\nschema = "nope"', "target schema 'nope' does not exist"),
    "include matches nothing": (
        '[tables]\ndiscover = true\ninclude = ["customers", "custmers"]',
        "include pattern 'custmers' matches no table",
    ),
    "everything excluded": ('[tables]\ndiscover = true\nexclude = ["*"]', "discover selects no table"),
    "chunk_size too large": (
        '[tables]\nnames = ["customers"]\n[tables.defaults]\nchunk_size = 1000000000000',
        "chunk_size in [tables.defaults] must be between 1 and 1000000, not 1000000000000",
    ),
    "chunk_size zero": (
        '[tables]\nnames = ["customers"]\n[table.customers]\nchunk_size = 0',
        "chunk_size in table 'customers' must be between 1 and 1000000, not 0",
    ),
}


@pytest.mark.parametrize("command", [["config", "check"], ["load"]])
@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_config_check_refuses_what_would_fail_or_do_nothing(workdir, config, case, command):
    assert etlctl("--config", str(config.path), "load", "customers").returncode == 0
    loaded = fingerprints(engine_for(workdir / "target.db"))
    body, fragment = CONFIG_CASES[case]
    text = _urls(workdir)
    if body.startswith("[target]"):
        text = text.replace("[target]\n", body + "\n") + '[tables]\nnames = ["customers"]\n'
    else:
        text += body + "\n"
    proc = etlctl("--config", _write(workdir, text), *command)
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("etlctl: error: ") and fragment in line, line
    assert fingerprints(engine_for(workdir / "target.db")) == loaded
