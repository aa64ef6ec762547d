"""fit.py's provers accept only what checks' SQL scan accepts: a value they pass must be one the
scan passes too (the other way round only costs a scan)."""

from __future__ import annotations

import pytest
from sqlalchemy import BigInteger, Boolean, Date, DateTime, Double, LargeBinary, Numeric, String

from flows.etl.fit import _prover

CASES = [
    (DateTime(), ("2024-02-28 23:59:59.000001", None), True),
    (DateTime(), ("2024-01-31 00:00:00.000000",), False),  # day 31: the scan decides
    (DateTime(), ("2024-01-01 24:00:00.000000",), False),
    (DateTime(), ("2024-01-01 10:00:00",), False),  # not SQLAlchemy's form
    (DateTime(), ("2024-01-01 10:00:00.000000+02:00",), False),
    (DateTime(), ("2024-01-01 10:00:00.000000\n2024-01-01 10:00:00.000000",), False),
    (DateTime(), (20240101,), False),
    (DateTime(), (None, None), True),
    (Date(), ("2024-02-28", "0001-12-01"), True),
    (Date(), ("2024-13-01",), False),
    (Date(), ("2024-02-30",), False),
    (BigInteger(), (1, None, 2**62), True),
    (BigInteger(), (1, 3.5), False),
    (BigInteger(), ("1",), False),
    (Boolean(), (0, 1, None), True),
    (Boolean(), (2,), False),
    (Double(), (1, 2.5, float("inf"), None), True),
    (Double(), ("NaN",), False),
    (String(2), ("ab", "ü", None), True),
    (String(2), ("abc",), False),
    (String(), ("a\x00b",), False),
    (String(), (b"ab",), False),
    (LargeBinary(), (b"\x00", None), True),
    (LargeBinary(), ("text",), False),
]


@pytest.mark.parametrize(("declared", "values", "proved"), CASES)
def test_a_prover_passes_only_values_the_scan_passes(declared, values, proved):
    assert _prover(declared)(values) is proved


def test_types_the_provers_leave_to_the_scan():
    assert _prover(Numeric(7, 2)) is None
