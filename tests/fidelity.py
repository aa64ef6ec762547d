"""An independent check that a loaded table equals its source, value by value.

Each side is read by SQL the database answers itself (`col::text` on PostgreSQL, `typeof()` and
`quote()` on SQLite), never through etlctl's type mapping or fingerprint. Between two databases of
the same dialect the answers must be identical; across dialects each value is compared by the
meaning its type gives it, with the rules written out below (docs/configuration.md has the same).
"""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal

from sqlalchemy import Engine, text


def read_pg(engine: Engine, table: str, key: str = "id") -> tuple[dict[str, str], dict]:
    """Column -> format_type (a domain's base type), and key -> {column: text or None}."""
    with engine.connect() as conn:
        types = dict(
            conn.execute(
                text(
                    "SELECT attname, format_type(CASE typtype WHEN 'd' THEN typbasetype ELSE atttypid END,"
                    " CASE typtype WHEN 'd' THEN typtypmod ELSE atttypmod END)"
                    " FROM pg_attribute JOIN pg_type ON pg_type.oid = atttypid"
                    " WHERE attrelid = to_regclass(:t) AND attnum > 0 AND NOT attisdropped"
                ),
                {"t": f'"{table}"'},
            ).all()
        )
        columns = ", ".join(f'"{c}"::text' for c in types)
        rows = conn.execute(text(f'SELECT "{key}"::text, {columns} FROM "{table}"')).all()
    return types, {row[0]: dict(zip(types, row[1:], strict=True)) for row in rows}


def read_sqlite(engine: Engine, table: str, key: str = "id") -> tuple[dict[str, str], dict]:
    """Column -> declared type, and key -> {column: (typeof, quote)}."""
    with engine.connect() as conn:
        types = {r[1]: r[2] for r in conn.exec_driver_sql(f'PRAGMA table_xinfo("{table}")').all()}
        columns = ", ".join(f'typeof("{c}"), quote("{c}")' for c in types)
        rows = conn.exec_driver_sql(f'SELECT CAST("{key}" AS TEXT), {columns} FROM "{table}"').all()
    return types, {row[0]: {c: (row[1 + 2 * i], row[2 + 2 * i]) for i, c in enumerate(types)} for row in rows}


def differences(source: Engine, target: Engine, table: str, key: str = "id") -> list[str]:
    """Every value that differs, as `row key / column: source vs target`; [] when equal."""
    read = {"postgresql": read_pg, "sqlite": read_sqlite}
    src_types, src = read[source.dialect.name](source, table, key)
    tgt_types, tgt = read[target.dialect.name](target, table, key)
    found = []
    if set(src) != set(tgt):
        found.append(f"row keys differ: {sorted(set(src) ^ set(tgt))[:5]}")
    if set(src_types) != set(tgt_types):
        found.append(f"columns differ: {sorted(set(src_types) ^ set(tgt_types))}")
    same = source.dialect.name == target.dialect.name
    for row_key in sorted(set(src) & set(tgt)):
        for column in sorted(set(src_types) & set(tgt_types)):
            a, b = src[row_key][column], tgt[row_key][column]
            if same:
                equal = a == b
            elif source.dialect.name == "postgresql":
                equal = _pg_equals_sqlite(src_types[column], a, b)
            else:
                equal = _pg_equals_sqlite(tgt_types[column], b, a)
            if not equal:
                found.append(f"{row_key} / {column}: {a!r} vs {b!r}")
    return found


def _pg_equals_sqlite(pg_type: str, pg: str | None, lite: tuple[str, str]) -> bool:
    """A PostgreSQL value (as text) and a SQLite value (typeof, quote) mean the same."""
    kind, quoted = lite
    if pg is None or kind == "null":
        return pg is None and kind == "null"
    value = _unquote(kind, quoted)
    base = pg_type.split("(")[0]
    if base in ("smallint", "integer", "bigint"):
        return kind == "integer" and value == int(pg)
    if base in ("real", "double precision") or (base == "numeric" and "," in pg_type and kind == "real"):
        if pg == "NaN":
            return kind == "text" and value == "NaN"
        return kind in ("real", "integer") and float(value) == float(pg)
    if base == "numeric":
        return kind in ("real", "integer", "text") and (
            value == pg if kind == "text" else Decimal(repr(value)) == Decimal(pg)
        )
    if base == "money":  # PostgreSQL prints the currency symbol and separators of its locale
        digits = pg.replace("$", "").replace(",", "")
        return kind == "text" and Decimal(value) == Decimal(digits)
    if base == "boolean":
        return kind == "integer" and value == (1 if pg == "true" else 0)
    if base == "bytea":
        return kind == "blob" and value == bytes.fromhex(pg[2:])
    if base.startswith("timestamp"):
        return kind == "text" and _instant(pg) == _instant(value)
    if base in ("date", "time without time zone"):
        return kind == "text" and _fromiso(base, pg) == _fromiso(base, value)
    if base == "character":
        return kind == "text" and value.rstrip(" ") == pg
    return kind == "text" and value == pg  # text, varchar, and every type stored as its text form


def _unquote(kind: str, quoted: str) -> object:
    if kind == "integer":
        return int(quoted)
    if kind == "real":
        return {"Inf": math.inf, "-Inf": -math.inf}.get(quoted) or float(quoted)
    if kind == "blob":
        return bytes.fromhex(quoted[2:-1])
    return quoted[1:-1].replace("''", "'")


def _instant(value: str) -> dt.datetime:
    """A timestamp as naive UTC: PostgreSQL prints `+01` offsets, SQLite holds UTC wall time."""
    parsed = dt.datetime.fromisoformat(value + ":00" if value[-3] in "+-" else value)
    return parsed.astimezone(dt.UTC).replace(tzinfo=None) if parsed.tzinfo else parsed


def _fromiso(base: str, value: str) -> object:
    return dt.date.fromisoformat(value) if base == "date" else dt.time.fromisoformat(value)
