"""Reading SQLite files back in assertions."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, inspect

from flows.etl.fingerprint import fingerprint


def engine_for(path: Path) -> Engine:
    return create_engine(f"sqlite:///{path}")


def user_tables(engine: Engine) -> list[str]:
    return sorted(t for t in inspect(engine).get_table_names() if not t.startswith("_etlctl_"))


def fingerprints(engine: Engine) -> dict[str, tuple[int, str]]:
    return {name: fingerprint(engine, name) for name in user_tables(engine)}
