"""A table's content fingerprint: the tests and the demo use it to prove the target equals the source.

The checksum is a sum of per-row SHA-256 values, so it ignores row order but, unlike XOR, counts a
duplicated row twice. Values are normalized before hashing so the same data read from SQLite and
from PostgreSQL (which hand back different Python types for some columns) fingerprints the same.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, MetaData, Table, select
from sqlalchemy.exc import NoSuchTableError

from flows.errors import UnknownTableError

MODULUS = 2**128
YIELD_PER = 10_000


def fingerprint(engine: Engine, table: str, schema: str | None = None) -> tuple[int, str]:
    """Row count and order-independent checksum (32 hex digits) of `table` as reflected now."""
    try:
        reflected = Table(table, MetaData(), schema=schema, autoload_with=engine)
    except NoSuchTableError:
        raise UnknownTableError(f"table {table!r} does not exist in {engine.url}") from None
    columns = sorted(reflected.columns, key=lambda column: column.name)
    count = total = 0
    with engine.connect() as conn:
        result = conn.execution_options(yield_per=YIELD_PER).execute(select(*columns))
        for row in result:
            encoded = json.dumps([_normalize(value) for value in row], ensure_ascii=False)
            total += int.from_bytes(hashlib.sha256(encoded.encode()).digest(), "big")
            count += 1
    return count, f"{total % MODULUS:032x}"


def _normalize(value: Any) -> str | None:
    """One text form per value whatever the driver returned; None stays JSON null, unlike "None"."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return "0" if value.is_zero() else format(value.normalize(), "f")
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.isoformat()
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return str(value)
