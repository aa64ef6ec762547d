"""A deterministic sample source database for the one-command demo, the tests and the benchmarks.

    tables = build_sample("sqlite:///source.db", big_rows=200_000)
    write_sample_config("etlctl.toml", "sqlite:///source.db", "sqlite:///warehouse.db")

`mutate_sample` replays a day of source activity, including rows tied with the last watermark, so
incremental loads can be checked end to end.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import URL, Column, Connection, Table, bindparam, create_engine, func, insert, select, update

from flows.demo.rows import BASE, FACTORIES, Row, RowFactory, contents
from flows.demo.tables import INCREMENTAL_TABLES, metadata

CHUNK = 20_000


def build_sample(url: str | URL, big_rows: int = 200_000, seed: int = 7) -> list[str]:
    """Recreate the sample tables from scratch so every build with one seed holds the same data."""
    rng = random.Random(seed)
    engine = create_engine(url)
    try:
        metadata.drop_all(engine)
        metadata.create_all(engine)
        with engine.begin() as conn:
            for table, rows in contents(rng, big_rows):
                _insert(conn, table, rows)
        if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
            with engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA journal_mode=WAL")
    finally:
        engine.dispose()
    return [table.name for table in metadata.sorted_tables]


def mutate_sample(url: str | URL, seed: int = 11) -> dict[str, int]:
    """Replay a day of source activity: updates, inserts, and new rows tied with the old watermark.

    The tie rows are the case an incremental load using `>` would miss: they arrive after the last
    load but carry exactly the watermark value it recorded.
    """
    rng = random.Random(seed)
    engine = create_engine(url)
    changed: dict[str, int] = {}
    try:
        with engine.begin() as conn:
            for name, cursor in INCREMENTAL_TABLES.items():
                table = metadata.tables[name]
                changed[name] = _mutate(conn, rng, table, table.c[cursor], FACTORIES[name])
    finally:
        engine.dispose()
    return changed


def write_sample_config(path: str | Path, source_url: str, target_url: str) -> Path:
    """Write the demo's config: discover every table, load the sample's incremental ones by cursor."""
    lines = [
        "[source]",
        f"url = {_toml_string(source_url)}",
        "",
        "[target]",
        f"url = {_toml_string(target_url)}",
        "",
        "[tables]",
        "discover = true",
        "",
        "[tables.defaults]",
        "chunk_size = 5000",
    ]
    for name, cursor in INCREMENTAL_TABLES.items():
        lines += [
            "",
            f"[table.{_toml_string(name)}]",
            'mode = "incremental"',
            f"cursor = {_toml_string(cursor)}",
        ]
    target = Path(path)
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target


def _toml_string(value: str) -> str:
    """A TOML basic string; TOML rejects raw control characters, so those are \\u-escaped."""
    out = []
    for char in value:
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _insert(conn: Connection, table: Table, rows: list[Row]) -> None:
    for start in range(0, len(rows), CHUNK):
        conn.execute(insert(table), rows[start : start + CHUNK])


def _mutate(conn: Connection, rng: random.Random, table: Table, cursor: Column, factory: RowFactory) -> int:
    watermark = conn.execute(select(func.max(cursor))).scalar_one() or BASE
    ids = sorted(conn.execute(select(table.c.id)).scalars())
    next_id = (ids[-1] if ids else 0) + 1

    def later() -> datetime:
        return watermark + timedelta(hours=1 + rng.randrange(12), minutes=rng.choice((0, 30)))

    touched = rng.sample(ids, k=max(1, len(ids) // 40))
    values = [c for c in table.columns if not c.primary_key]
    statement = update(table).where(table.c.id == bindparam("pk"))
    statement = statement.values({c: bindparam(f"v{i}") for i, c in enumerate(values)})
    params = []
    for pk in touched:
        row = factory(rng, pk, later())
        params.append({"pk": pk, **{f"v{i}": row[c.name] for i, c in enumerate(values)}})
    conn.execute(statement, params)

    ties = [factory(rng, next_id + i, watermark) for i in range(2)]
    fresh = [factory(rng, next_id + 2 + i, later()) for i in range(rng.randrange(20, 60))]
    _insert(conn, table, ties + fresh)
    return len(touched) + len(ties) + len(fresh)
