"""Map a reflected source column to a target column of equivalent type.

Types go through SQLAlchemy's generic types (`as_generic()`), so a DECIMAL(12,2) stays a
NUMERIC(12,2) and a DATETIME becomes a TIMESTAMP on PostgreSQL. Between two databases of the same
dialect the reflected type is kept as it is, so nothing is lost to the generic layer.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Column, DateTime, Table
from sqlalchemy.engine import Dialect
from sqlalchemy.types import NullType, TypeEngine, UserDefinedType

from flows.errors import UnsupportedError


class Untyped(UserDefinedType):
    """A SQLite column declared without a type: it stores every value as given, so keep it so."""

    cache_ok = True

    def get_col_spec(self) -> str:
        return ""


def target_type(column: Column, source: Dialect, target: Dialect) -> TypeEngine:
    """The type to declare in the target for `column`, or UnsupportedError naming the column."""
    kind = column.type
    if isinstance(kind, NullType):
        if target.name == "sqlite":
            return Untyped()
        raise UnsupportedError(
            f"column {column.name!r} of {column.table.name!r} has no declared type; "
            f"declare one in the source to load it into {target.name}"
        )
    if source.name == target.name:
        return kind.copy()
    try:
        return kind.as_generic()
    except NotImplementedError:
        raise UnsupportedError(
            f"column {column.name!r} of {column.table.name!r} has type {kind!r}, "
            f"which has no {target.name} equivalent"
        ) from None


def target_column(column: Column, source: Dialect, target: Dialect, primary_key: bool) -> Column:
    """A fresh target Column: same name and nullability, no server default, no autoincrement."""
    return Column(
        column.name,
        target_type(column, source, target),
        primary_key=primary_key,
        nullable=column.nullable and not primary_key,
        autoincrement=False,
    )


Adapter = Callable[[Any], Any]


def value_adapters(source: Table, target: Dialect) -> list[Adapter | None]:
    """Per column, how a value must change to mean the same in the target, or None.

    SQLite has no time zones: an aware timestamp is stored as its UTC wall time, which is what
    PostgreSQL's timestamptz means, instead of silently dropping the offset.
    """
    return [
        _utc_naive if isinstance(c.type, DateTime) and c.type.timezone and target.name == "sqlite" else None
        for c in source.columns
    ]


def adapt_rows(rows: Sequence[tuple], adapters: Sequence[Adapter | None]) -> Sequence[tuple]:
    if not any(adapters):
        return rows
    return [
        tuple(v if f is None or v is None else f(v) for v, f in zip(row, adapters, strict=True))
        for row in rows
    ]


def _utc_naive(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value
