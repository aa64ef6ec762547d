"""The check each fault test ends with: every configured table, in source and target, after the fault.

A table the test loaded must equal its source (row count and checksum); a table it did not load
must be absent from the target, so a fault that half-loaded or wrongly loaded a table shows too.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from sqlalchemy import create_engine, inspect

from flows.config import load_config
from flows.etl.engines import make_engine
from flows.etl.fingerprint import fingerprint
from flows.etl.plan import select_tables


def every_table_differences(config_path: str | Path, loaded: Iterable[str] | None = None) -> list[str]:
    """'table: source (rows, sum) vs target (rows, sum)' for each configured table that is wrong.

    `loaded` names the tables that should be in the target (default: every configured table).
    """
    config = load_config(Path(config_path))
    source = make_engine(config.source_url, "source")
    target = create_engine(config.target_url)
    try:
        configured = sorted(select_tables(config, source))
        expected = set(configured if loaded is None else loaded)
        present = set(inspect(target).get_table_names(schema=config.target_schema))
        wrong = []
        for table in configured:
            if table not in expected:
                if table in present:
                    wrong.append(f"{table}: in the target, but not loaded by this test")
                continue
            want = fingerprint(source, table, config.source_schema)
            have = fingerprint(target, table, config.target_schema) if table in present else None
            if have != want:
                wrong.append(f"{table}: source {want} vs target {have}")
        return wrong
    finally:
        source.dispose()
        target.dispose()
