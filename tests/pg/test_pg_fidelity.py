"""Every type PostgreSQL and SQLite reflect either arrives equal (checked by SQL each database
answers itself, tests/fidelity.py) or is refused before anything moves, naming table, column and
type. Bad input goes through the real `etlctl` executable: one line, the documented exit code, and
the target unchanged."""

from __future__ import annotations

import os
import secrets
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from flows.config import load_config
from flows.etl.engines import make_engine
from flows.etl.step import run_table
from tests.etl.test_bad_input import etlctl
from tests.fidelity import differences
from tests.pg.conftest import PASSWORD_ENV, config_url

KINDS = """CREATE TABLE kinds (
  id int PRIMARY KEY, j json, jb jsonb, arr int[], tarr text[], u uuid, iv interval, m mood,
  mon money, ip inet, net cidr, mac macaddr, ttz time with time zone, t time, num numeric,
  num2 numeric(10,3), b bit(4), vb varbit, gen int GENERATED ALWAYS AS (id * 2) STORED, r real,
  d double precision, big bigint, ts tsvector, dom posint, oid_ oid, ch char(3), bo boolean,
  dt date, tsp timestamp, tstz timestamptz, by bytea, ir int4range, hs text, vc varchar(5))"""
ROWS = [
    """(1, '{"a":1,  "b":[1,2], "ü": "\\u00fc"}', '{"b": [1, 2.50], "a": 1}', '{1,2,NULL}',
    '{"x,y","z''q"}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '1 year 2 mons 3 days 04:05:06.789',
    'ok', '12.34', '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03', '12:30:00+02',
    '23:59:59.999999', '123456789012345678901234567890.123456789012345', '1.5', '1010', '10101',
    1.1, 0.1, 9223372036854775807, 'a fat cat', 5, 42, 'ab', true, '2024-02-29',
    '2024-03-01 12:00:00.5', '2024-03-01 12:00:00+01', '\\x00ff', '[1,5)', 'Grüße ✓ ''q''', 'abcde')""",
    """(2, 'null', 'null', NULL, '{}', NULL, '-00:00:01', 'sad', '-0.01', '::1', '::/0', NULL,
    '00:00:00-14:59', '00:00', 'NaN', '-0.001', '0000', '', 'NaN', 'Infinity', -9223372036854775808,
    '', 1, 0, '', false, '0001-01-01', '9999-12-31 23:59:59.999999', '1970-01-01 00:00:00+00',
    '\\x', 'empty', '', '')""",
    """(3, '"text"', '[]', '{}', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    '0.000000100', '0', NULL, NULL, '-Infinity', '-Infinity', 0, NULL, NULL, NULL, NULL, NULL, NULL,
    NULL, NULL, NULL, NULL, NULL, NULL)""",
    "(4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,"
    " NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
]
COLUMNS = (
    "id, j, jb, arr, tarr, u, iv, m, mon, ip, net, mac, ttz, t, num, num2, b, vb, r, d, big, ts, dom,"
    " oid_, ch, bo, dt, tsp, tstz, by, ir, hs, vc"
)


@pytest.fixture
def dbs(pg_cluster, tmp_path):
    """A PostgreSQL source with every kind of column, a PostgreSQL target, a SQLite target."""
    tag = secrets.token_hex(4)
    source = pg_cluster.create_database(f"src_{tag}")
    pg_cluster.create_database(f"tgt_{tag}")
    with create_engine(source).begin() as conn:
        conn.exec_driver_sql("CREATE TYPE mood AS ENUM ('sad', 'ok')")
        conn.exec_driver_sql("CREATE DOMAIN posint AS integer CHECK (VALUE > 0)")
        conn.exec_driver_sql(KINDS)
        conn.exec_driver_sql(f"INSERT INTO kinds ({COLUMNS}) VALUES {', '.join(ROWS)}")
    return {
        "pg-source": config_url(pg_cluster, f"src_{tag}"),
        "pg": config_url(pg_cluster, f"tgt_{tag}"),
        "sqlite": f"sqlite:///{tmp_path / 'target.db'}",
        "sqlite-source": f"sqlite:///{tmp_path / 'source.db'}",
        "raw-source": create_engine(source),
        "tmp": tmp_path,
    }


def write_config(tmp: Path, source: str, target: str, body: str) -> Path:
    path = tmp / f"etlctl-{secrets.token_hex(3)}.toml"
    path.write_text(f'[source]\nurl = "{source}"\n[target]\nurl = "{target}"\n{body}', encoding="utf-8")
    return path


def one_error_line(proc) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("etlctl: error: "), proc.stderr
    return lines[0]


def target_tables(url: str) -> dict[str, int]:
    """The user tables in the target at `url` (as a config holds it) and their row counts."""
    tmp = Path(f"/tmp/etlctl-target-{secrets.token_hex(4)}.toml")
    tmp.write_text(f'[source]\nurl = "{url}"\n[target]\nurl = "{url}"\n[tables]\nnames = ["x"]\n')
    try:
        engine = make_engine(load_config(tmp).target_url, "target")
    finally:
        tmp.unlink()
    with engine.connect() as conn:
        names = [n for n in inspect(conn).get_table_names() if not n.startswith("_etlctl_")]
        return {n: conn.exec_driver_sql(f'SELECT count(*) FROM "{n}"').scalar_one() for n in names}


@pytest.mark.parametrize("mode", ["full", "incremental"])
@pytest.mark.parametrize("target", ["pg", "sqlite"])
def test_every_postgres_type_arrives_equal(dbs, target, mode):
    body = '[tables]\nnames = ["kinds"]\n[tables.defaults]\nchunk_size = 2\n'
    if mode == "incremental":
        body += 'mode = "incremental"\ncursor = "id"\n'
    config = load_config(write_config(dbs["tmp"], dbs["pg-source"], dbs[target], body))
    assert etlctl("--config", str(config.path), "config", "check").returncode == 0
    result = run_table(config, "kinds")
    assert (result.outcome, result.rows_read, result.rows_written) == ("success", 4, 4)
    target_engine = make_engine(config.target_url, "target")
    assert differences(dbs["raw-source"], target_engine, "kinds") == []
    if mode == "incremental":  # a quiet rerun rewrites nothing: every value compares equal to itself
        assert run_table(config, "kinds").rows_written == 0
        assert differences(dbs["raw-source"], target_engine, "kinds") == []


def test_sqlite_values_arrive_equal_in_postgres(dbs):
    path = dbs["tmp"] / "source.db"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE kinds (id INTEGER PRIMARY KEY, i INTEGER, s SMALLINT, r REAL, n NUMERIC(12, 2),"
            " nn NUMERIC, bo BOOLEAN, d DATE, ts DATETIME, t TIME, tx TEXT, vc VARCHAR(5), bl BLOB,"
            " j JSON, g INTEGER GENERATED ALWAYS AS (i + 1) VIRTUAL)"
        )
        conn.executemany(
            "INSERT INTO kinds (id, i, s, r, n, nn, bo, d, ts, t, tx, vc, bl, j) VALUES"
            " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    1,
                    2**63 - 2,  # the generated column adds 1
                    70000,
                    0.1,
                    12.34,
                    1.25,
                    1,
                    "2024-02-29",
                    "2024-03-01 12:00:00.000000",
                    "23:59:59.500000",
                    "Grüße ✓ 'q'",
                    "abcde",
                    b"\x00\xff",
                    '{"a":1,  "b": null}',
                ),
                (
                    2,
                    -(2**63),
                    -1,
                    1e308,
                    -0.01,
                    7,
                    0,
                    "0001-01-01",
                    "2024-03-01 12:00:00",
                    "00:00:00",
                    "",
                    "",
                    b"",
                    "null",
                ),
                (3, 0, 0, float("inf"), 0, -3.5, None, None, "2024-03-01", None, None, None, None, "[]"),
                (4, None, None, None, None, None, None, None, None, None, None, None, None, None),
            ],
        )
    for mode in ("full", "incremental"):
        cursor = '\n[tables.defaults]\nmode = "incremental"\ncursor = "id"\n' if mode == "incremental" else ""
        config = load_config(
            write_config(dbs["tmp"], dbs["sqlite-source"], dbs["pg"], f'[tables]\nnames = ["kinds"]{cursor}')
        )
        assert etlctl("--config", str(config.path), "config", "check").returncode == 0
        assert run_table(config, "kinds").outcome == "success", mode
        source = create_engine(f"sqlite:///{path}")
        assert differences(source, make_engine(config.target_url, "target"), "kinds") == [], mode
        with make_engine(config.target_url, "target").begin() as conn:
            conn.exec_driver_sql("DROP TABLE kinds")
            conn.exec_driver_sql("DELETE FROM _etlctl_state")


MISFITS = {
    "text in INTEGER": ("INTEGER", "'abc'", "'abc' (text)"),
    "huge integer stored as REAL": ("INTEGER", "1e20", "(real)"),
    "fraction in INTEGER": ("INTEGER", "3.5", "3.5 (real)"),
    "text in NUMERIC(12, 2)": ("NUMERIC(12, 2)", "'12,50'", "'12,50' (text)"),
    "more decimals than NUMERIC(12, 2)": ("NUMERIC(12, 2)", "12.345", "12.345 (real)"),
    "bytes in TEXT": ("TEXT", "x'00ff'", "X'00FF' (blob)"),
    "text in BLOB": ("BLOB", "'abc'", "'abc' (text)"),
    "too long for VARCHAR(2)": ("VARCHAR(2)", "'abc'", "'abc' (text)"),
    "2 in BOOLEAN": ("BOOLEAN", "2", "2 (integer)"),
    "not a date": ("DATE", "'yesterday'", "'yesterday' (text)"),
    "February 30th": ("DATE", "'2024-02-30'", "'2024-02-30' (text)"),
    "timestamp with an offset": ("DATETIME", "'2024-01-01 10:00:00+02:00'", "(text)"),
    "invalid JSON": ("JSON", "'{a:1}'", "'{a:1}' (text)"),
    "NUL in TEXT": ("TEXT", "'a' || char(0) || 'b'", "(text)"),
}


@pytest.mark.parametrize("case", sorted(MISFITS))
def test_sqlite_values_postgres_cannot_hold_are_refused(dbs, case):
    declared, value, shown = MISFITS[case]
    path = dbs["tmp"] / "source.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"CREATE TABLE misfit (id INTEGER PRIMARY KEY, c {declared})")
        conn.execute(f"INSERT INTO misfit VALUES (1, NULL), (2, {value})")
    config = write_config(dbs["tmp"], dbs["sqlite-source"], dbs["pg"], '[tables]\nnames = ["misfit"]\n')
    for command in (["config", "check"], ["load"]):
        proc = etlctl("--config", str(config), *command)
        line = one_error_line(proc) if command[0] == "config" else proc.stdout
        assert proc.returncode == (2 if command[0] == "config" else 1), proc.stderr + proc.stdout
        assert "column 'c' of table 'misfit'" in line and shown in line, line
    assert target_tables(dbs["pg"]) == {}


def test_unsupported_postgres_types_are_refused_naming_the_column(dbs):
    with dbs["raw-source"].begin() as conn:
        conn.exec_driver_sql("CREATE TABLE opaque (id int, x xml, p point)")
        conn.exec_driver_sql("INSERT INTO opaque VALUES (1, '<a>1</a>', '(1,2)')")
    body = '[tables]\nnames = ["opaque"]\n'
    proc = etlctl(
        "--config", str(write_config(dbs["tmp"], dbs["pg-source"], dbs["pg"], body)), "config", "check"
    )
    assert proc.returncode == 2
    assert "column 'x' of table 'opaque' (unknown type)" in one_error_line(proc)
    config = load_config(write_config(dbs["tmp"], dbs["pg-source"], dbs["sqlite"], body))
    assert run_table(config, "opaque").outcome == "success"  # into SQLite: PostgreSQL's text form
    assert differences(dbs["raw-source"], make_engine(config.target_url, "target"), "opaque") == []


def test_dates_python_cannot_hold_are_refused(dbs):
    with dbs["raw-source"].begin() as conn:
        conn.exec_driver_sql("CREATE TABLE forever (id int, until timestamp)")
        conn.exec_driver_sql("INSERT INTO forever VALUES (1, '2024-01-01'), (2, 'infinity')")
    for target in ("pg", "sqlite"):
        path = write_config(dbs["tmp"], dbs["pg-source"], dbs[target], '[tables]\nnames = ["forever"]\n')
        proc = etlctl("--config", str(path), "config", "check")
        assert proc.returncode == 2
        line = one_error_line(proc)
        assert (
            "column 'until' of table 'forever' (TIMESTAMP WITHOUT TIME ZONE)" in line and "infinity" in line
        )
        load = etlctl("--config", str(path), "load")
        # the rows never become Python values (COPY to COPY into PostgreSQL, to_char into SQLite):
        # the scan names the column
        assert load.returncode == 1 and "column 'until' of table 'forever'" in load.stdout, load.stdout
        assert "forever" not in target_tables(dbs[target])


@pytest.mark.parametrize("target", ["pg", "sqlite"])
def test_names_that_collide_in_the_target_are_refused(dbs, target):
    # SQLite names ignore case: "Case" and "case" from PostgreSQL are one table in SQLite.
    # PostgreSQL keeps the first 63 bytes of a name: long SQLite names can become one.
    if target == "sqlite":
        names, source = ("Case", "case"), dbs["pg-source"]
        with dbs["raw-source"].begin() as conn:
            for i, name in enumerate(names):
                conn.exec_driver_sql(f'CREATE TABLE "{name}" (id int)')
                conn.exec_driver_sql(f'INSERT INTO "{name}" VALUES ({i})')
    else:
        names, source = ("x" * 63 + "_first", "x" * 63 + "_second"), dbs["sqlite-source"]
        with sqlite3.connect(dbs["tmp"] / "source.db") as conn:
            for i, name in enumerate(names):
                conn.execute(f'CREATE TABLE "{name}" (id INTEGER)')
                conn.execute(f'INSERT INTO "{name}" VALUES ({i})')
    body = f"[tables]\nnames = {list(names)!r}\n".replace("'", '"')
    path = write_config(dbs["tmp"], source, dbs[target], body)
    discover = write_config(dbs["tmp"], source, dbs[target], '[tables]\ndiscover = true\ninclude = ["*"]\n')
    for config, command in [(path, ["config", "check"]), (path, ["load"]), (discover, ["load", names[1]])]:
        proc = etlctl("--config", str(config), *command)
        assert proc.returncode == 2, proc.stderr
        line = one_error_line(proc)
        assert repr(names[0]) in line and repr(names[1]) in line, line
    assert target_tables(dbs[target]) == {}


def test_a_table_without_columns_is_refused(dbs):
    with dbs["raw-source"].begin() as conn:
        conn.exec_driver_sql("CREATE TABLE nothing ()")
        conn.exec_driver_sql("INSERT INTO nothing DEFAULT VALUES")
    for target in ("pg", "sqlite"):
        path = write_config(dbs["tmp"], dbs["pg-source"], dbs[target], '[tables]\nnames = ["nothing"]\n')
        for command in (["config", "check"], ["load"]):
            proc = etlctl("--config", str(path), *command)
            assert proc.returncode == 2
            assert "table 'nothing' has no columns" in one_error_line(proc)
        assert target_tables(dbs[target]) == {}


def test_target_schema_that_does_not_exist_is_refused(dbs):
    body = '[tables]\nnames = ["kinds"]\n'
    path = write_config(dbs["tmp"], dbs["pg-source"], dbs["pg"], body).read_text()
    bad = dbs["tmp"] / "schema.toml"
    bad.write_text(path.replace("[tables]", 'schema = "nope"\n[tables]'), encoding="utf-8")
    for command in (["config", "check"], ["load"]):
        proc = etlctl("--config", str(bad), *command)
        assert proc.returncode == 2
        assert "target schema 'nope' does not exist" in one_error_line(proc)
        assert "etl:***@" in proc.stderr and os.environ[PASSWORD_ENV] not in proc.stderr
    assert target_tables(dbs["pg"]) == {}


@pytest.mark.parametrize("target", ["pg", "sqlite"])
def test_duplicate_incremental_keys_fail_the_table_and_change_nothing(dbs, target):
    with dbs["raw-source"].begin() as conn:
        conn.exec_driver_sql("CREATE TABLE events (code text, seq int, note text)")
        conn.exec_driver_sql("INSERT INTO events VALUES ('a', 1, 'x'), ('b', 2, 'y'), ('c', 3, 'z')")
    body = (
        '[tables]\nnames = ["events"]\n[table.events]\nmode = "incremental"\ncursor = "seq"\n'
        'primary_key = "code"\nchunk_size = 2\n'
    )
    path = write_config(dbs["tmp"], dbs["pg-source"], dbs[target], body)
    assert etlctl("--config", str(path), "load").returncode == 0
    config = load_config(path)
    before = differences(dbs["raw-source"], make_engine(config.target_url, "target"), "events", key="code")
    assert before == []
    # Read from seq 3 in chunks of 2: [c3, b4] [d5, c6] [e7, e8]. 'b' repeats a row loaded before,
    # 'c' repeats across chunks, 'e' within one chunk.
    with dbs["raw-source"].begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO events VALUES ('b', 4, 'y2'), ('d', 5, 'w'), ('c', 6, 'z2'),"
            " ('e', 7, 'v'), ('e', 8, 'v2')"
        )
    proc = etlctl("--config", str(path), "config", "check")
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert "primary_key (code) is not unique" in line, line
    assert "e.g. 'b' (2 rows), 'c' (2 rows), 'e' (2 rows);" in line, line
    proc = etlctl("--config", str(path), "load")
    assert proc.returncode == 1
    assert "events" in proc.stdout and "'b' (2 rows)" in proc.stdout
    with make_engine(config.target_url, "target").connect() as conn:
        rows = conn.exec_driver_sql("SELECT code, seq, note FROM events ORDER BY code").all()
    assert [tuple(r) for r in rows] == [("a", 1, "x"), ("b", 2, "y"), ("c", 3, "z")]


def test_a_misfit_met_during_the_copy_keeps_the_old_rows(dbs):
    """Into PostgreSQL the values are proved while they are copied (fit.py): a misfit in a late
    chunk fails the load with the scan's message and the old rows stay; a value the fast proof
    cannot judge (day 31) makes the scan run once, and the load goes on."""
    path = dbs["tmp"] / "source.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE late (id INTEGER PRIMARY KEY, at DATETIME, n INTEGER)")
        rows = [(i, f"2024-01-{1 + i % 28:02d} 00:00:00.000000", i) for i in range(10)]
        conn.executemany("INSERT INTO late VALUES (?, ?, ?)", rows)
        conn.execute("UPDATE late SET at = '2024-01-31 12:00:00.000000' WHERE id = 3")
    body = '[tables]\nnames = ["late"]\n[tables.defaults]\nchunk_size = 2\n'
    config = load_config(write_config(dbs["tmp"], dbs["sqlite-source"], dbs["pg"], body))
    assert run_table(config, "late").outcome == "success"
    assert (
        differences(create_engine(f"sqlite:///{path}"), make_engine(config.target_url, "target"), "late")
        == []
    )
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO late VALUES (10, '2024-01-02 00:00:00.000000', 'eleven')")
    proc = etlctl("--config", str(config.path), "load")
    assert proc.returncode == 1 and "column 'n' of table 'late'" in proc.stdout + proc.stderr, proc.stdout
    assert "'eleven' (text)" in proc.stdout + proc.stderr
    assert target_tables(dbs["pg"]) == {"late": 10}
