"""copytext writes what psycopg's own COPY formatter writes, or declines the chunk.

(psycopg also escapes backspace, form feed and vertical tab; COPY reads them the same raw, so
the rows here leave them out to compare bytes.)"""

from __future__ import annotations

from decimal import Decimal

import pytest
from psycopg._copy_base import TextFormatter  # psycopg keeps it private
from psycopg.adapt import Transformer

from flows.etl.copytext import copy_text

ROWS = [
    (1, "plain", 0.25, None),
    (-(2**63), "tab\there\nnew line\r\\back\\slash \\N", 1e-300, "naïve ☃ 𝄞"),
    (None, None, None, None),
    (2**70, "", -0.0, '{"a": "b\\n"}'),
    (7, "\\", 12345678.123456789, "x"),
    (8, "bell\x07 and \x7f", 3, "end"),
]
AMOUNTS = [(Decimal("12.34"), 1), (None, 2), (Decimal("-0.000001"), 3), (Decimal("1E+2"), 4)]


def psycopg_text(rows: list[tuple]) -> bytes:
    formatter = TextFormatter(Transformer())
    return b"".join(bytes(formatter.write_row(row)) for row in rows) + bytes(formatter.end())


def test_copy_text_is_byte_for_byte_what_psycopg_writes() -> None:
    assert copy_text(ROWS) == psycopg_text(ROWS)
    assert copy_text(AMOUNTS) == psycopg_text(AMOUNTS)
    assert copy_text([(None,), (None,)]) == b"\\N\n\\N\n"
    assert copy_text([]) == b""


@pytest.mark.parametrize(
    "value", [b"bytes", True, Decimal("NaN"), float("inf"), float("nan"), "nul\x00inside", {"a": 1}]
)
def test_copy_text_leaves_other_types_to_psycopg(value: object) -> None:
    assert copy_text([(1, "a"), (2, value)]) is None
