"""Map a reflected source column to a target column, and decide how its values travel.

One decision per column, made before any row moves (docs/configuration.md has the table):

- how the column is read: as the driver gives it, or as its PostgreSQL text form (`CAST(c AS
  TEXT)`) where the driver's Python value would lose something (json, interval, arrays, ...);
- the type declared in the target: the reflected type between two databases of the same dialect,
  an equivalent type across dialects, or UnsupportedError naming the table, column and type;
- the adapter (or None) that turns the driver's value into one the target's driver stores with the
  same meaning.

Values go to and from the drivers untouched by SQLAlchemy's per-type processing (`Verbatim`): every
conversion is one of the adapters here, so what a column does is decided in one place.
"""

from __future__ import annotations

import datetime as dt
import math
import operator
import struct
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    REAL,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Double,
    Float,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Table,
    Text,
    Time,
    cast,
    func,
    literal_column,
    type_coerce,
)
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.operators import OperatorClass
from sqlalchemy.types import JSON, NullType, TypeDecorator, TypeEngine, UserDefinedType

from flows.errors import UnsupportedError

Adapter = Callable[[Any], Any]

# SQLite keeps 15 significant decimal digits in a REAL; more need the exact text.
SQLITE_REAL_DIGITS = 15


class Untyped(UserDefinedType):
    """A SQLite column declared without a type: it stores every value as given, so keep it so."""

    cache_ok = True

    def get_col_spec(self) -> str:
        return ""


class Verbatim(TypeDecorator):
    """The declared type for DDL and bind casts; values pass to and from the driver as they are."""

    impl = NullType
    cache_ok = True
    # The only operator etlctl applies to these columns is IS DISTINCT FROM, which every type has.
    operator_classes = OperatorClass.ANY

    def __init__(self, declared: TypeEngine) -> None:
        super().__init__()
        self.impl = declared

    def bind_processor(self, dialect: Dialect) -> None:
        return None

    def result_processor(self, dialect: Dialect, coltype: object) -> None:
        return None


@dataclass(frozen=True)
class ColumnMapping:
    """How one column moves: read as text or as is, the target type, the value adapter."""

    as_text: bool
    target: TypeEngine
    adapter: Adapter | None = None
    # PostgreSQL writes the adapter's text itself (to_char), when the caller asks for it
    formatted: Callable[[ColumnElement], ColumnElement] | None = None


def describe(column: Column) -> str:
    """`column 'c' of table 't' (TYPE)`: how every message names a column."""
    return f"column {column.name!r} of table {column.table.name!r} ({_type_name(column.type)})"


def column_mapping(column: Column, source: Dialect, target: Dialect) -> ColumnMapping:
    """The decision for `column`, or UnsupportedError naming the table, column and type."""
    kind = column.type
    if isinstance(kind, NullType) and source.name == "sqlite":
        if target.name == "sqlite":
            return ColumnMapping(False, Untyped())
        raise UnsupportedError(
            f"{describe(column)} has no declared type; "
            f"declare one in the source to load it into {target.name}"
        )
    if source.name == "sqlite" and target.name == "sqlite":
        return ColumnMapping(False, kind.copy())
    if source.name == "postgresql" and target.name == "postgresql":
        return _pg_to_pg(column)
    if source.name == "postgresql" and target.name == "sqlite":
        return _pg_to_sqlite(column)
    if source.name == "sqlite" and target.name == "postgresql":
        return _sqlite_to_pg(column)
    raise UnsupportedError(
        f"{describe(column)}: loads from {source.name} into {target.name} are not supported "
        "(etlctl moves data between SQLite and PostgreSQL)"
    )


def target_type(column: Column, source: Dialect, target: Dialect) -> TypeEngine:
    """The type to declare in the target for `column`, or UnsupportedError naming the column."""
    return Verbatim(column_mapping(column, source, target).target)


def target_column(column: Column, source: Dialect, target: Dialect, primary_key: bool) -> Column:
    """A fresh target Column: same name and nullability, no server default, no autoincrement."""
    return Column(
        column.name,
        target_type(column, source, target),
        primary_key=primary_key,
        nullable=column.nullable and not primary_key,
        autoincrement=False,
    )


def read_columns(table: Table, target: Dialect, formatted: Collection[str] = ()) -> list[ColumnElement]:
    """The SELECT list that reads `table` for `target`: text where the driver's value would lose,
    and the adapter's text made by the source for the columns in `formatted` (see `formattable`)."""
    source = source_dialect(table)
    out = []
    for column in table.columns:
        mapping = column_mapping(column, source, target)
        if mapping.formatted and column.name in formatted:
            out.append(mapping.formatted(column).label(column.name))
        elif mapping.as_text:
            # money prints with the server's currency symbol and separators: read its digits.
            digits = cast(column, Numeric) if isinstance(column.type, pg.MONEY) else column
            out.append(cast(digits, Text).label(column.name))
        else:
            out.append(type_coerce(column, Verbatim(column.type)).label(column.name))
    return out


def value_adapters(source: Table, target: Dialect, formatted: Collection[str] = ()) -> list[Adapter | None]:
    """Per column, how a value must change to mean the same in the target, or None (always None
    for the columns in `formatted`: the source sends them as the adapter's text)."""
    dialect = source_dialect(source)
    mappings = [(c.name, column_mapping(c, dialect, target)) for c in source.columns]
    return [None if m.formatted and name in formatted else m.adapter for name, m in mappings]


def formattable(source: Table, target: Dialect) -> list[str]:
    """The columns whose adapter's text the source can make itself: PostgreSQL's to_char of a
    timestamp or date into SQLite, in C, instead of a Python `isoformat` per value."""
    dialect = source_dialect(source)
    return [c.name for c in source.columns if column_mapping(c, dialect, target).formatted]


def comparable(column: ColumnElement) -> ColumnElement:
    """`column` in a form `IS DISTINCT FROM` works on: PostgreSQL's json has no equality."""
    kind = column.type.impl if isinstance(column.type, Verbatim) else column.type
    return cast(column, Text) if isinstance(kind, JSON) and not isinstance(kind, pg.JSONB) else column


def cursor_value(table: Table, name: str) -> Adapter:
    """Turns a value of the cursor column as read into the column's Python type, for the watermark."""
    dialect = source_dialect(table)
    process = table.c[name].type.dialect_impl(dialect).result_processor(dialect, None)
    return process or _same


def _same(value: Any) -> Any:
    return value


def adapt_rows(rows: Sequence[tuple], adapters: Sequence[Adapter | None]) -> Sequence[tuple]:
    """Apply each column's adapter to its non-NULL values; only the columns that have one.

    Column by column: one comprehension per adapted column costs a fraction of a Python loop over
    every value of every row. The rows are rebuilt only when a value changed (a float8 column
    without NaN is left as it is, and so is the chunk).
    """
    active = [(i, f) for i, f in enumerate(adapters) if f is not None]
    if not active or not rows:
        return rows
    adapted: dict[int, Sequence] = {}
    for i, adapt in active:
        values = list(map(operator.itemgetter(i), rows))
        if None in values:
            adapted[i] = [None if v is None else adapt(v) for v in values]
        elif adapt not in _RARE or _RARE[adapt](values):  # map: no Python loop when nothing is NULL
            adapted[i] = list(map(adapt, values))
    if not adapted:
        return rows
    columns: list[Sequence] = list(zip(*rows, strict=True))
    for i, values in adapted.items():
        columns[i] = values
    return list(zip(*columns, strict=True))


def source_dialect(table: Table) -> Dialect:
    """The dialect `table` was reflected from, recorded by `reflect_table` (plan.py)."""
    return table.info["dialect"]


# --- PostgreSQL -> PostgreSQL: the same type; text where psycopg's Python value loses something.

_PG_NATIVE = (Integer, Float, Boolean, String, LargeBinary, Numeric, Date, DateTime, Time)


def _pg_to_pg(column: Column) -> ColumnMapping:
    kind = column.type
    if isinstance(kind, NullType):
        raise UnsupportedError(
            f"{describe(column)}: SQLAlchemy does not know this type, so etlctl cannot create it "
            "in the target; cast it in a view, or leave the table out"
        )
    if isinstance(kind, pg.DOMAIN):
        # The domain's base type: its CHECK lives in the source schema, not in every target.
        return ColumnMapping(True, kind.data_type.copy())
    native = isinstance(kind, _PG_NATIVE) and not isinstance(kind, (pg.MONEY, pg.ENUM, JSON))
    return ColumnMapping(not native, kind.copy())


# --- PostgreSQL -> SQLite: native SQLite storage where it holds the value, else the exact text.


def _pg_to_sqlite(column: Column) -> ColumnMapping:
    kind = column.type
    if isinstance(kind, pg.DOMAIN):
        kind = kind.data_type
    if isinstance(kind, Boolean):
        return ColumnMapping(False, Boolean())
    if isinstance(kind, Integer) and not isinstance(kind, pg.OID):
        return ColumnMapping(False, BigInteger() if isinstance(kind, BigInteger) else kind.as_generic())
    if isinstance(kind, Float):
        single = isinstance(kind, REAL)
        return ColumnMapping(False, Double() if not single else Float(), _float4 if single else _float8)
    if isinstance(kind, Numeric) and not isinstance(kind, pg.MONEY):
        if kind.precision is not None and kind.precision <= SQLITE_REAL_DIGITS and kind.scale is not None:
            return ColumnMapping(False, Numeric(kind.precision, kind.scale), _decimal_to_real)
        return ColumnMapping(False, Text(), _decimal_text)
    if isinstance(kind, DateTime):
        if kind.timezone:
            return ColumnMapping(False, DateTime(), _sqlite_datetime, _utc_timestamp_text)
        return ColumnMapping(False, DateTime(), _naive_datetime, _timestamp_text)
    if isinstance(kind, Date):
        return ColumnMapping(False, Date(), _sqlite_date, _date_text)
    if isinstance(kind, Time) and not kind.timezone:
        return ColumnMapping(False, Time(), _sqlite_time)
    if isinstance(kind, LargeBinary):
        return ColumnMapping(False, LargeBinary())
    if isinstance(kind, String) and not isinstance(kind, pg.ENUM | JSON):
        return ColumnMapping(False, kind.as_generic() if not isinstance(kind, pg.CITEXT) else Text())
    # json, jsonb, uuid, interval, money, enum, inet, cidr, macaddr, arrays, ranges, bit, time with
    # time zone, tsvector, xml, point, ...: PostgreSQL's own text form, which SQLite stores as is.
    return ColumnMapping(True, Text())


def _float8(value: float) -> float | str:
    """SQLite stores NaN as NULL: keep it as the text PostgreSQL reads back as NaN."""
    return "NaN" if math.isnan(value) else value


def _float4(value: float) -> float | str:
    """A float4 as PostgreSQL prints it (1.1, not 1.100000023841858): the shortest exact digits."""
    if math.isnan(value) or math.isinf(value):
        return _float8(value)
    for digits in range(6, 10):
        shortest = float(f"{value:.{digits}g}")
        if struct.unpack("f", struct.pack("f", shortest))[0] == value:
            return shortest
    return value


def _decimal_to_real(value: Decimal) -> float | str:
    return "NaN" if value.is_nan() else float(value)


def _decimal_text(value: Decimal) -> str:
    """The digits as PostgreSQL prints them, never in exponent form (str gives 1E-7)."""
    return "NaN" if value.is_nan() else "Infinity" if value == Decimal("Infinity") else format(value, "f")


def _any_nan(values: Sequence[float]) -> bool:
    return not all(map(math.isfinite, values)) and any(map(math.isnan, values))


# adapters that change only a rare value, and the column-wide test (in C) for whether any is there
_RARE: dict[Adapter, Callable[[Sequence], bool]] = {_float8: _any_nan}

# SQLAlchemy's SQLite text form of a timestamp without zone, with no Python frame per value
_naive_datetime = operator.methodcaller("isoformat", " ", "microseconds")


def _sqlite_datetime(value: dt.datetime) -> str:
    """SQLAlchemy's SQLite text form; an aware timestamp as its UTC wall time (SQLite has no zones)."""
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value.isoformat(" ", "microseconds")  # strftime's form, 20x faster


# The same text made by PostgreSQL: to_char ignores DateStyle; YYYY pads years below 1000 to four
# digits as isoformat does; infinity and years outside 1-9999 are refused before (checks.py).
_TIMESTAMP_FORMAT = literal_column("'YYYY-MM-DD HH24:MI:SS.US'")


def _timestamp_text(column: ColumnElement) -> ColumnElement:
    return func.to_char(column, _TIMESTAMP_FORMAT)


def _utc_timestamp_text(column: ColumnElement) -> ColumnElement:
    return func.to_char(func.timezone(literal_column("'UTC'"), column), _TIMESTAMP_FORMAT)


def _date_text(column: ColumnElement) -> ColumnElement:
    return func.to_char(column, literal_column("'YYYY-MM-DD'"))


def _sqlite_date(value: dt.date) -> str:
    return value.isoformat()


def _sqlite_time(value: dt.time) -> str:
    return value.isoformat("microseconds")


# --- SQLite -> PostgreSQL: SQLite's storage classes into types that hold every value of them.


def _sqlite_to_pg(column: Column) -> ColumnMapping:
    kind = column.type
    if isinstance(kind, Boolean):
        return ColumnMapping(False, Boolean(), bool)
    if isinstance(kind, Integer):
        return ColumnMapping(False, BigInteger())  # SQLite integers are 64-bit whatever the declaration
    if isinstance(kind, Float):
        return ColumnMapping(False, Double())  # SQLite REAL is 8 bytes; PostgreSQL REAL is 4
    if isinstance(kind, Numeric):
        return ColumnMapping(False, Numeric(kind.precision, kind.scale), _real_to_decimal)
    if isinstance(kind, JSON):
        return ColumnMapping(False, pg.JSON())  # json, unlike jsonb, keeps the text as written
    if isinstance(kind, DateTime | Date | Time | String | LargeBinary):
        return ColumnMapping(False, kind.as_generic())
    raise UnsupportedError(f"{describe(column)} has no postgresql equivalent")


def _real_to_decimal(value: Any) -> Any:
    """A REAL's shortest exact digits, not the float's binary expansion."""
    return Decimal(repr(value)) if isinstance(value, float) else value


def _type_name(kind: TypeEngine) -> str:
    if isinstance(kind, NullType):
        return "unknown type"
    try:
        return str(kind.compile(dialect=pg.dialect()))
    except Exception:
        return type(kind).__name__
