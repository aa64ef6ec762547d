"""Map a reflected source column to a target column of equivalent type.

Types go through SQLAlchemy's generic types (`as_generic()`), so a DECIMAL(12,2) stays a
NUMERIC(12,2) and a DATETIME becomes a TIMESTAMP on PostgreSQL. Between two databases of the same
dialect the reflected type is kept as it is, so nothing is lost to the generic layer.
"""

from __future__ import annotations

from sqlalchemy import Column
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
