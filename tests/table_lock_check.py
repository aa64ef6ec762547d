"""Two real `etlctl load` processes of one table at once: shared by the SQLite and PostgreSQL tests.

The test holds the table's lock first, so both loads are certainly running and waiting at the same
moment (no timing luck); when it lets go, one loads and the other must wait for it, not interleave.
Ends comparing every configured table with its source (tests/every_table.py).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from flows.config import Config
from flows.etl import state as st
from flows.etl.engines import make_engine
from flows.etl.fingerprint import fingerprint
from flows.etl.table_lock import table_lock
from tests.every_table import every_table_differences
from tests.polling import until

ETLCTL = str(Path(sys.executable).with_name("etlctl"))
TABLE = "measurements"


def two_loads_at_once(config: Config, env: dict[str, str], logs: Path) -> None:
    """Start two loads of TABLE while the lock is held, release it; both succeed, one after the other."""
    target = make_engine(config.target_url, "target")
    errs = [logs / f"load-{n}.err" for n in (1, 2)]
    with table_lock(target, TABLE, config.target_schema):
        procs = [
            subprocess.Popen(
                [ETLCTL, "--config", str(config.path), "load", TABLE, "--batch-id", f"b{n}"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=err.open("w"),
            )
            for n, err in enumerate(errs, 1)
        ]
        until(
            lambda: all("being loaded by another process" in e.read_text() for e in errs),
            120,
            "both loads waiting for the table's lock",
        )
    codes = [p.wait(timeout=300) for p in procs]
    assert codes == [0, 0], [e.read_text()[-2000:] for e in errs]
    source = make_engine(config.source_url, "source")
    assert fingerprint(target, TABLE, config.target_schema) == fingerprint(source, TABLE)
    expected = fingerprint(source, TABLE)[0]
    runs = st.state_tables(config.target_schema)[1]
    with target.connect() as conn:
        rows = conn.execute(select(runs.c.batch_id, runs.c.outcome, runs.c.rows_written)).all()
    assert sorted(rows) == [("b1", "success", expected), ("b2", "success", expected)]
    assert every_table_differences(config.path, loaded=[TABLE]) == []  # and no other table touched
