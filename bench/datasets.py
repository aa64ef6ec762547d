"""The tables the data-path benchmark copies, built by SQLite itself so a build costs seconds.

build_narrow(path, 1_000_000)      # narrow: integer key, timestamp text, text, real, category
build_store_sales(path, 288_000)   # TPC-DS store_sales shape: 11 integers, 12 DECIMAL(7,2)
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

_SERIES = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
KEYS = [
    "ss_sold_date_sk",
    "ss_sold_time_sk",
    "ss_item_sk",
    "ss_customer_sk",
    "ss_cdemo_sk",
    "ss_hdemo_sk",
    "ss_addr_sk",
    "ss_store_sk",
    "ss_promo_sk",
    "ss_ticket_number",
    "ss_quantity",
]
AMOUNTS = [
    "ss_wholesale_cost",
    "ss_list_price",
    "ss_sales_price",
    "ss_ext_discount_amt",
    "ss_ext_sales_price",
    "ss_ext_wholesale_cost",
    "ss_ext_list_price",
    "ss_ext_tax",
    "ss_coupon_amt",
    "ss_net_paid",
    "ss_net_paid_inc_tax",
    "ss_net_profit",
]


@contextmanager
def _writing(path: Path) -> Iterator[sqlite3.Connection]:
    """A WAL-mode connection, closed after a checkpoint: a source is read from its file, as a source
    at rest is, not through the tens of MB of log its build left (which slows every reader)."""
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        with conn:
            yield conn
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def build_narrow(path: Path, rows: int) -> None:
    with _writing(path) as conn:
        conn.execute(
            "CREATE TABLE narrow (id INTEGER PRIMARY KEY, taken_at DATETIME NOT NULL, label TEXT,"
            " value REAL, category VARCHAR(8))"
        )
        conn.execute(
            f"{_SERIES} INSERT INTO narrow SELECT i, datetime('2024-01-01', printf('+%d seconds', i))"
            " || '.000000', printf('reading %08d', i), i * 0.25, 'cat' || (i % 7) FROM n",
            (rows,),
        )


def build_store_sales(path: Path, rows: int) -> None:
    columns = [f"{k} INTEGER" for k in KEYS] + [f"{a} DECIMAL(7,2)" for a in AMOUNTS]
    keys = [f"(i * {n + 7}) % {1000 + 97 * n}" for n in range(len(KEYS))]
    keys[KEYS.index("ss_item_sk")], keys[KEYS.index("ss_ticket_number")] = "i % 18000", "i / 18000"
    amounts = [f"round(((i * {n + 3}) % 99999) / 100.0, 2)" for n in range(len(AMOUNTS))]
    with _writing(path) as conn:
        conn.execute(
            f"CREATE TABLE store_sales ({', '.join(columns)}, PRIMARY KEY (ss_item_sk, ss_ticket_number))"
        )
        conn.execute(f"{_SERIES} INSERT INTO store_sales SELECT {', '.join(keys + amounts)} FROM n", (rows,))


def touch_narrow(path: Path, changed: int) -> None:
    """`changed` rows get a new value and a later timestamp: the delta of an incremental load."""
    with _writing(path) as conn:
        conn.execute(
            "UPDATE narrow SET value = value + 1, taken_at = datetime(taken_at, '+30 days') || '.000000'"
            " WHERE id % (SELECT max(1, count(*) / ?) FROM narrow) = 0",
            (changed,),
        )
