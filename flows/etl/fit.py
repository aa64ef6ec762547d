"""The pre-write value scan folded into a full load's copy: Python proves, a chunk at a time,
that SQLite values fit the types the target declares for them.

    fits = InFlight(src, source, tgt.dialect)   # fits.columns: what it proves; the scan skips them
    for rows in chunks:
        fits(list(zip(*rows)))                   # raises checks' UnsupportedError on a misfit

Why: checks.check_values reads every row in SQLite before the copy (2.3-2.8 s of an 8.6 s load of
1M narrow rows into PostgreSQL). A full load into PostgreSQL is one transaction, so a misfit met
during the copy still leaves the target unchanged. The common case is cheap to prove: the types
by `map(type)`, timestamps and dates in SQLAlchemy's own form (day of the month up to 28) by one
regular expression over the chunk's joined text. A chunk it cannot prove runs the exact SQL scan
once over the whole table: it raises the same error as before the copy would have, or it clears
the table (a day 31, a number stored as text 'NaN') and the rest of the load goes unchecked.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from types import NoneType

from sqlalchemy import BigInteger, Boolean, Connection, Date, DateTime, Double, LargeBinary, String, Table
from sqlalchemy.engine import Dialect
from sqlalchemy.types import JSON, Numeric, Time

from flows.etl.checks import refuse_misfits
from flows.etl.typemap import column_mapping

Prover = Callable[[Sequence], bool]

_DAY = "[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])"
_TIMESTAMP = re.compile(f"(?:{_DAY} (?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]\\.[0-9]{{6}}\n)*")
_DATE = re.compile(f"(?:{_DAY}\n)*")


class InFlight:
    """Called with each chunk as read, transposed (a tuple per column); the columns it proves
    need no scan beforehand."""

    def __init__(self, conn: Connection, table: Table, target: Dialect) -> None:
        self.conn, self.table, self.target = conn, table, target
        self.provers: list[tuple[int, Prover]] = []
        for i, column in enumerate(table.columns):
            mapping = column_mapping(column, conn.dialect, target)
            prover = None if mapping.as_text else _prover(mapping.target)  # a cast hides the storage class
            if prover is not None:
                self.provers.append((i, prover))

    @property
    def columns(self) -> list[str]:
        return [self.table.columns[i].name for i, _ in self.provers]

    def __call__(self, columns: Sequence[Sequence]) -> None:
        if all(prove(columns[i]) for i, prove in self.provers):
            return
        refuse_misfits(self.conn, self.table, self.target)  # raises, or has checked every row
        self.provers = []


def _prover(declared: object) -> Prover | None:
    """Mirrors checks._misfit (same order of isinstance tests): True only for values it accepts."""
    if isinstance(declared, Boolean):
        return lambda values: _kinds(values, int) and set(values) <= {0, 1, None}
    if isinstance(declared, BigInteger):
        return lambda values: _kinds(values, int)
    if isinstance(declared, Double):
        return lambda values: _kinds(values, int, float)
    if isinstance(declared, Numeric | Time | JSON):
        return None
    if isinstance(declared, DateTime):
        return lambda values: _shaped(values, _TIMESTAMP)
    if isinstance(declared, Date):
        return lambda values: _shaped(values, _DATE)
    if isinstance(declared, String):
        return lambda values: _text(values, declared.length)
    if isinstance(declared, LargeBinary):
        return lambda values: _kinds(values, bytes)
    return None


def _kinds(values: Sequence, *kinds: type) -> bool:
    return set(map(type, values)) <= {NoneType, *kinds}


def _present(values: Sequence) -> Sequence:
    return [v for v in values if v is not None] if None in values else values


def _shaped(values: Sequence, pattern: re.Pattern[str]) -> bool:
    """Every value is text of the pattern's form (a newline inside a value shows in the count)."""
    if not _kinds(values, str):
        return False
    present = _present(values)
    joined = "\n".join(present) + "\n"
    return not present or (joined.count("\n") == len(present) and pattern.fullmatch(joined) is not None)


def _text(values: Sequence, length: int | None) -> bool:
    if not _kinds(values, str):
        return False
    present = _present(values)
    if "\x00" in "".join(present):
        return False
    return length is None or max(map(len, present), default=0) <= length
