"""A chunk of rows as PostgreSQL COPY text, built a column at a time, for the plain types only.

    block = copy_text(rows)   # None: some column holds a type this module does not write
    copy.write(block) if block is not None else [copy.write_row(row) for row in rows]

psycopg's `Copy.write_row` formats each row in a Python call of its own (about 3.6 us per narrow
row, most of SQLite -> PostgreSQL's time); here each column is turned into text by one C-level
pass (`map(str, ...)`, a join and four `str.replace`s), and the rows are joined the same way.
Only ints, finite floats, finite Decimals (SQLite REALs into numeric, typemap), str and NULLs are
written: the text of each is what psycopg writes for it (`str`), and PostgreSQL parses it for any
target type that accepts that value. Any other type (bytes, bool, datetime, inf/nan, ...) returns
None and the caller lets psycopg format the chunk.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import Decimal
from itertools import chain

NULL = "\\N"
_SEPARATOR = "\x00"  # cannot occur in a value PostgreSQL accepts as text
_NUMBERS = frozenset({int, float})


def copy_text(rows: Sequence[tuple], columns: Sequence[Sequence] | None = None) -> bytes | None:
    """COPY FROM STDIN text format (tab-separated, `\\N` for NULL, one line per row), or None.

    `columns`: the rows already transposed (the caller's in-flight check has them). When no value
    is NULL or needs escaping, each value's text is its `str` and the whole chunk is one `%`
    formatting of the rows as they are; otherwise each column's text is built, then the rows.
    """
    if not rows:
        return b""
    columns = list(zip(*rows, strict=True)) if columns is None else columns
    texts = []
    for values in columns:
        text = _column_text(values)
        if text is None:
            return None
        texts.append(text)
    plain = [text is values for text, values in zip(texts, columns, strict=True)]
    if all(plain):
        line = "\t".join(["%s"] * len(texts)) + "\n"
        return ((line * len(rows)) % tuple(chain.from_iterable(rows))).encode()
    texts = [list(map(str, text)) if as_is else text for text, as_is in zip(texts, plain, strict=True)]
    return ("\n".join(map("\t".join, zip(*texts, strict=True))) + "\n").encode()


def _column_text(values: Sequence) -> Sequence | None:
    """The column's text, or `values` itself when every value's text is its `str` (no NULL, no
    character to escape), or None for a type this module does not write."""
    kinds = set(map(type, values))
    nulls = type(None) in kinds
    kinds.discard(type(None))
    if not kinds:
        return [NULL] * len(values)
    if kinds <= _NUMBERS or kinds == {Decimal}:
        present = [v for v in values if v is not None] if nulls else values
        if float in kinds and not all(map(math.isfinite, present)):
            return None
        if Decimal in kinds and not all(map(Decimal.is_finite, present)):
            return None
        return [NULL if v is None else str(v) for v in values] if nulls else values
    if kinds == {str}:
        joined = _SEPARATOR.join(["" if v is None else v for v in values] if nulls else values)
        if joined.count(_SEPARATOR) != len(values) - 1:
            return None  # a NUL inside a value: psycopg reports it
        escaped = _escape(joined)
        if escaped is joined and not nulls:  # str.replace returns the string itself when it finds nothing
            return values
        split = escaped.split(_SEPARATOR)
        if nulls:
            return [NULL if v is None else e for v, e in zip(values, split, strict=True)]
        return split
    return None


def _escape(text: str) -> str:
    """Backslash, tab, newline and carriage return are the characters COPY text needs escaped."""
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
