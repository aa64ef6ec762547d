"""The sample source and the fingerprint that later tests trust to prove a target equals its source."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, MetaData, Select, Table, create_engine, delete, func, insert, inspect, select

from flows.config import load_config
from flows.demo.sample import INCREMENTAL_TABLES, build_sample, mutate_sample, write_sample_config
from flows.errors import UnknownTableError
from flows.etl.fingerprint import fingerprint

SMALL = 5000
AWKWARD = {"order details", "select", "Ünïcode täble", 'say "hello"', "CamelCase"}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """One small build shared read-only; tests that write take a copy."""
    path = tmp_path_factory.mktemp("sample") / "source.db"
    return path, build_sample(f"sqlite:///{path}", big_rows=SMALL)


@pytest.fixture
def copy(built: tuple[Path, list[str]], tmp_path: Path) -> Iterator[Engine]:
    path = tmp_path / "copy.db"
    shutil.copy(built[0], path)
    engine = create_engine(f"sqlite:///{path}")
    yield engine
    engine.dispose()


def engine_at(path: Path) -> Engine:
    return create_engine(f"sqlite:///{path}")


def reflect(engine: Engine, name: str) -> Table:
    return Table(name, MetaData(), autoload_with=engine)


def scalar(engine: Engine, query: Select) -> Any:
    with engine.connect() as conn:
        return conn.execute(query).scalar_one()


def fingerprints(engine: Engine, names: list[str]) -> dict[str, tuple[int, str]]:
    return {name: fingerprint(engine, name) for name in names}


def test_build_has_every_shape(built):
    path, names = built
    engine = engine_at(path)
    inspector = inspect(engine)
    assert len(names) >= 22
    assert set(inspector.get_table_names()) == set(names)
    assert set(names) >= AWKWARD
    assert {"order id", "unit price", "qty.", "Ümlaut column"} <= {
        c["name"] for c in inspector.get_columns("order details")
    }
    assert len(inspector.get_columns("wide_metrics")) > 30
    assert inspector.get_pk_constraint("access_log")["constrained_columns"] == []
    assert len(inspector.get_pk_constraint("product_categories")["constrained_columns"]) == 2
    counts = {name: fingerprint(engine, name)[0] for name in names}
    assert counts["archive_empty"] == 0
    assert counts["app_settings"] == 1
    assert counts["measurements"] == SMALL
    log = reflect(engine, "access_log")
    distinct = scalar(engine, select(func.count()).select_from(select(log).distinct().subquery()))
    assert distinct < counts["access_log"]
    for name, cursor in INCREMENTAL_TABLES.items():
        table = reflect(engine, name)
        shared = select(table.c[cursor]).group_by(table.c[cursor]).having(func.count() > 1)
        assert scalar(engine, select(func.count()).select_from(shared.subquery())) > 0, name
    engine.dispose()


def test_default_big_table_has_200k_rows_in_wal_mode(tmp_path):
    build_sample(f"sqlite:///{tmp_path / 'big.db'}")
    engine = engine_at(tmp_path / "big.db")
    assert scalar(engine, select(func.count()).select_from(reflect(engine, "measurements"))) == (200_000)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
    engine.dispose()


def test_same_seed_same_fingerprints_until_mutated(built, tmp_path):
    path, names = built
    first, second = engine_at(path), engine_at(tmp_path / "again.db")
    assert build_sample(f"sqlite:///{tmp_path / 'again.db'}", big_rows=SMALL) == names
    before = fingerprints(second, names)
    assert before == fingerprints(first, names)
    mutate_sample(f"sqlite:///{tmp_path / 'again.db'}")
    after = fingerprints(second, names)
    assert {n for n in names if after[n] != before[n]} == set(INCREMENTAL_TABLES)
    build_sample(f"sqlite:///{tmp_path / 'again.db'}", big_rows=SMALL, seed=8)
    assert fingerprints(second, ["customers"]) != fingerprints(first, ["customers"])
    first.dispose()
    second.dispose()


def test_mutate_ties_the_previous_watermark(copy):
    tables = {name: reflect(copy, name) for name in INCREMENTAL_TABLES}
    old = {
        name: (
            scalar(copy, select(func.max(t.c[INCREMENTAL_TABLES[name]]))),
            scalar(copy, select(func.max(t.c.id))),
        )
        for name, t in tables.items()
    }
    changed = mutate_sample(copy.url)
    assert set(changed) == set(INCREMENTAL_TABLES)
    for name, table in tables.items():
        cursor = table.c[INCREMENTAL_TABLES[name]]
        watermark, last_id = old[name]
        ties = select(func.count()).where(cursor == watermark, table.c.id > last_id)
        later = select(func.count()).where(cursor > watermark)
        assert scalar(copy, ties) >= 1, name
        assert changed[name] == scalar(copy, ties) + scalar(copy, later), name


def test_fingerprint_counts_duplicates(built, tmp_path):
    """Two different rows each added twice: XOR would call both tables unchanged."""
    source = engine_at(built[0])
    with source.connect() as conn:
        log_rows = select(reflect(source, "access_log")).distinct().limit(2)
        first, second = (row._asdict() for row in conn.execute(log_rows))
    original = fingerprint(source, "access_log")
    source.dispose()
    results = []
    for name, row in (("one.db", first), ("two.db", second)):
        shutil.copy(built[0], tmp_path / name)
        engine = engine_at(tmp_path / name)
        with engine.begin() as conn:
            conn.execute(insert(reflect(engine, "access_log")), [row, row])
        results.append(fingerprint(engine, "access_log"))
        engine.dispose()
    assert results[0][0] == results[1][0] == original[0] + 2
    assert len({results[0][1], results[1][1], original[1]}) == 3


def test_fingerprint_ignores_row_order(copy):
    log = reflect(copy, "access_log")
    before = fingerprint(copy, "access_log")
    with copy.begin() as conn:
        rows = [row._asdict() for row in conn.execute(select(log))]
        conn.execute(delete(log))
        conn.execute(insert(log), rows[::-1])
    assert fingerprint(copy, "access_log") == before


def test_fingerprint_of_missing_table(copy):
    with pytest.raises(UnknownTableError, match="no_such_table"):
        fingerprint(copy, "no_such_table")


def test_config_round_trips(tmp_path):
    source = "sqlite:///" + str(tmp_path / 'odd "name" \\ dir.db')
    path = write_sample_config(tmp_path / "etlctl.toml", source, "postgresql://etl@db:5432/dw")
    config = load_config(path)
    assert config.source_url.database == str(tmp_path / 'odd "name" \\ dir.db')
    assert config.target_url.render_as_string() == "postgresql://etl@db:5432/dw"
    assert config.selection.discover
    assert config.defaults.chunk_size == 5000
    assert set(config.overrides) == set(INCREMENTAL_TABLES)
    for name, cursor in INCREMENTAL_TABLES.items():
        options = config.options_for(name)
        assert (options.mode, options.cursor, options.chunk_size) == ("incremental", cursor, 5000)
    assert config.options_for("measurements").mode == "full"
