"""The table step between PostgreSQL and SQLite in every direction, on a real PostgreSQL server."""

from __future__ import annotations

import datetime as dt
import secrets

import pytest
from sqlalchemy import Boolean, Column, DateTime, Integer, LargeBinary, MetaData, Numeric, Table, Text, text

from flows.config import load_config
from flows.demo.sample import INCREMENTAL_TABLES, build_sample, mutate_sample, write_sample_config
from flows.etl.batch import run_tables
from flows.etl.engines import make_engine
from flows.etl.fingerprint import fingerprint
from flows.etl.step import run_table
from tests.pg.conftest import config_url


@pytest.fixture
def databases(pg_cluster, tmp_path):
    """Fresh PostgreSQL source and target databases and SQLite files, by role."""
    tag = secrets.token_hex(4)
    pg_source = pg_cluster.create_database(f"src_{tag}")
    pg_cluster.create_database(f"tgt_{tag}")
    build_sample(pg_source, big_rows=50_000)
    build_sample(f"sqlite:///{tmp_path / 'source.db'}", big_rows=50_000)
    return {
        "pg-source": config_url(pg_cluster, f"src_{tag}"),
        "pg-target": config_url(pg_cluster, f"tgt_{tag}"),
        "sqlite-source": f"sqlite:///{tmp_path / 'source.db'}",
        "sqlite-target": f"sqlite:///{tmp_path / 'target.db'}",
    }


def _differences(config) -> list[str]:
    source, target = make_engine(config.source_url, "source"), make_engine(config.target_url, "target")
    names = [r for r in _tables(config)]
    return [t for t in names if fingerprint(source, t) != fingerprint(target, t)]


def _tables(config) -> list[str]:
    from flows.etl.plan import select_tables

    return select_tables(config, make_engine(config.source_url, "source"))


@pytest.mark.parametrize(
    ("source", "target"),
    [("pg-source", "pg-target"), ("sqlite-source", "pg-target"), ("pg-source", "sqlite-target")],
)
def test_full_and_incremental_loads_match_the_source(databases, tmp_path, source, target):
    config = load_config(write_sample_config(tmp_path / "etlctl.toml", databases[source], databases[target]))
    first = run_tables(config, [])
    assert len(first) >= 20 and {r.outcome for r in first} == {"success"}
    assert _differences(config) == []
    changed = mutate_sample(config.source_url.render_as_string(hide_password=False))
    second = {r.table: r for r in run_tables(config, list(INCREMENTAL_TABLES))}
    assert {t: second[t].rows_written for t in INCREMENTAL_TABLES} == changed
    assert _differences(config) == []
    quiet = run_tables(config, list(INCREMENTAL_TABLES))
    assert [r.rows_written for r in quiet] == [0] * len(INCREMENTAL_TABLES)


def test_postgres_types_keep_their_meaning(databases, tmp_path):
    source = make_engine(
        load_config(_config(tmp_path, databases["pg-source"], databases["pg-target"])).source_url, "source"
    )
    meta = MetaData()
    kinds = Table(
        "pg kinds",
        meta,
        Column("id", Integer, primary_key=True),
        Column("aware", DateTime(timezone=True)),
        Column("naive", DateTime),
        Column("money", Numeric(15, 4)),  # SQLite keeps 15 significant digits (REAL)
        Column("flag", Boolean),
        Column("body", Text),
        Column("blob", LargeBinary),
    )
    berlin = dt.timezone(dt.timedelta(hours=1))
    with source.begin() as conn:
        meta.create_all(conn)
        conn.execute(
            kinds.insert(),
            [
                {
                    "id": 1,
                    "aware": dt.datetime(2024, 3, 1, 12, 30, tzinfo=berlin),
                    "naive": dt.datetime(2024, 3, 1),
                    "money": "12345678901.1234",
                    "flag": True,
                    "body": "Grüße ✓",
                    "blob": b"\x00\xff",
                },
                {
                    "id": 2,
                    "aware": None,
                    "naive": None,
                    "money": None,
                    "flag": None,
                    "body": None,
                    "blob": None,
                },
            ],
        )
    for target in ("pg-target", "sqlite-target"):
        config = load_config(_config(tmp_path, databases["pg-source"], databases[target], names=["pg kinds"]))
        assert run_table(config, "pg kinds").outcome == "success"
        out = make_engine(config.target_url, "target")
        assert fingerprint(out, "pg kinds") == fingerprint(source, "pg kinds"), target
        with out.connect() as conn:
            aware = conn.execute(text('SELECT aware FROM "pg kinds" WHERE id = 1')).scalar_one()
        expected = dt.datetime(2024, 3, 1, 11, 30)
        assert (aware if isinstance(aware, str) else aware.astimezone(dt.UTC).replace(tzinfo=None)) in (
            expected,
            "2024-03-01 11:30:00.000000",
        ), target


def test_extract_uses_a_server_side_cursor(databases, tmp_path):
    config = load_config(
        _config(tmp_path, databases["pg-source"], databases["sqlite-target"], names=["measurements"])
    )
    watcher = make_engine(config.source_url, "target")
    seen: list[str] = []

    def look(rows_read: int) -> None:
        with watcher.connect() as conn:
            seen.extend(
                conn.execute(
                    text(
                        "SELECT query FROM pg_stat_activity"
                        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                ).scalars()
            )

    run_table(config, "measurements", on_chunk=look)
    assert any(q.lstrip().upper().startswith(("FETCH", "DECLARE")) for q in seen), seen[:5]


def _config(tmp_path, source: str, target: str, names: list[str] | None = None):
    path = tmp_path / "kinds.toml"
    tables = f"names = {names!r}" if names else "discover = true"
    path.write_text(
        f'[source]\nurl = "{source}"\n[target]\nurl = "{target}"\n[tables]\n{tables}\n'
        "[tables.defaults]\nchunk_size = 5000\n".replace("'", '"')
    )
    return path


@pytest.mark.parametrize("source", ["sqlite-source", "pg-source"])
def test_full_load_into_postgres_replaces_in_place_and_readers_see_old_rows(databases, tmp_path, source):
    """PostgreSQL full loads COPY straight into the target inside one transaction: no staging table,
    readers see the old rows throughout, a failure leaves them, a rerun equals the source."""
    config = load_config(_config(tmp_path, databases[source], databases["pg-target"], names=["measurements"]))
    run_table(config, "measurements")
    target = make_engine(config.target_url, "target")
    before = fingerprint(target, "measurements")
    mutate = make_engine(config.source_url, "target")
    with mutate.begin() as conn:
        conn.execute(text("DELETE FROM measurements WHERE id % 3 = 0"))
    seen: list[tuple[tuple[int, str], list[str]]] = []

    def look_then_fail(rows_read: int) -> None:
        with target.connect() as conn:
            tables = conn.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            ).scalars()
            seen.append((fingerprint(target, "measurements"), sorted(tables)))
        if rows_read >= 15_000:
            raise RuntimeError("injected failure after 3 chunks")

    with pytest.raises(RuntimeError, match="injected failure"):
        run_table(config, "measurements", on_chunk=look_then_fail)
    assert [print_ for print_, _ in seen] == [before] * 3
    assert not any(t.startswith("_etlctl_stage") for _, tables in seen for t in tables)
    assert fingerprint(target, "measurements") == before
    assert run_table(config, "measurements").rows_written == fingerprint(mutate, "measurements")[0]
    assert fingerprint(target, "measurements") == fingerprint(mutate, "measurements") != before
