"""Which tables move and how: the configuration checked against the source's real schema.

The orchestrator, `etlctl config check` and every table run ask the same questions here, so a typo in
a table or column name fails the same way everywhere: before any row moves.
"""

from __future__ import annotations

import fnmatch
import warnings
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, MetaData, Table, func, inspect, select, text
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import NoSuchTableError, SAWarning

from flows.config import Config, TableOptions
from flows.errors import ConfigError, UnknownTableError
from flows.etl.checks import (
    INTERNAL_PREFIX,
    check_schemas,
    check_table,
    check_values,
    refuse_collisions,
)
from flows.etl.engines import check_connection, make_engine


@dataclass(frozen=True)
class TablePlan:
    """One table as the step will move it; `rows` is an estimate for display only."""

    name: str
    options: TableOptions
    primary_key: tuple[str, ...]
    rows: int | None = None


def select_tables(config: Config, engine: Engine) -> list[str]:
    """The table names the job covers, in a stable order, each checked to exist in the source."""
    return choose_tables(config, inspect(engine).get_table_names(schema=config.source_schema))


def choose_tables(config: Config, existing: list[str]) -> list[str]:
    """The selection applied to the source's table names; etlctl's own tables are never chosen."""
    existing = [name for name in existing if not name.startswith(INTERNAL_PREFIX)]
    sel = config.selection
    if sel.discover:
        for pattern in sel.include:
            if not any(fnmatch.fnmatchcase(name, pattern) for name in existing):
                raise ConfigError(
                    f"[tables] include pattern {pattern!r} matches no table in the source"
                    f"{_in_schema(config.source_schema)}; patterns are case-sensitive"
                )
        chosen = [
            name
            for name in existing
            if any(fnmatch.fnmatchcase(name, p) for p in sel.include)
            and not any(fnmatch.fnmatchcase(name, p) for p in sel.exclude)
        ]
        if not chosen:
            raise ConfigError(
                "[tables] discover selects no table: every table the include patterns match is excluded"
            )
    else:
        chosen = list(dict.fromkeys([*sel.names, *config.overrides]))
    known = set(existing)
    for name in [*chosen, *config.overrides]:
        if name not in known:
            raise UnknownTableError(f"table {name!r} is not in the source database")
    return sorted(chosen)


def _in_schema(schema: str | None) -> str:
    return f" schema {schema!r}" if schema else ""


def reflect_table(conn: Connection, name: str, schema: str | None) -> Table:
    """The source table as the database describes it now; UnknownTableError if it is gone."""
    try:
        with warnings.catch_warnings():
            # An unknown column type reflects as NullType; typemap names it in a one-line error.
            warnings.simplefilter("ignore", SAWarning)
            table = Table(name, MetaData(schema=schema), autoload_with=conn)
    except NoSuchTableError:
        raise UnknownTableError(f"table {name!r} is not in the source database") from None
    table.info["dialect"] = conn.dialect  # the type mapping depends on where the table comes from
    return table


def primary_key_for(table: Table, options: TableOptions) -> tuple[str, ...]:
    """The configured key, else the source's; checks the key and cursor columns exist."""
    key = options.primary_key or tuple(c.name for c in table.primary_key.columns)
    for column in [*key, *([options.cursor] if options.cursor else [])]:
        if column not in table.columns:
            raise ConfigError(f"table {table.name!r} has no column {column!r}")
    if options.mode == "incremental" and not key:
        raise ConfigError(
            f"table {table.name!r} is incremental but has no primary key: "
            "set primary_key = [...] for it in the config"
        )
    return key


def plan_tables(
    config: Config,
    engine: Engine,
    names: list[str] | None = None,
    estimate: bool = True,
    target: Dialect | None = None,
    values: bool = False,
) -> list[TablePlan]:
    """Plans for `names` (default: every selected table), each checked against the source schema
    and, given the `target` dialect, against what the target can hold (checks.py); `values`
    also scans the data (SQLite values that do not fit, duplicate incremental keys).

    Checking every table before the first one moves keeps a typo from leaving half a batch loaded.
    """
    wanted = names if names is not None else select_tables(config, engine)
    plans = []
    with engine.connect() as conn:
        for name in wanted:
            table = reflect_table(conn, name, config.source_schema)
            options = config.options_for(name)
            key = primary_key_for(table, options)
            if target is not None:
                check_table(conn, table, target)
                if values:
                    check_values(conn, table, target, key if options.mode == "incremental" else None)
            rows = estimate_rows(conn, table) if estimate else None
            plans.append(TablePlan(name, options, key, rows))
    return plans


def estimate_rows(conn: Connection, table: Table) -> int:
    """PostgreSQL's planner estimate where counting would scan a large table; exact elsewhere."""
    if conn.dialect.name == "postgresql":
        regclass = conn.dialect.identifier_preparer.format_table(table)
        estimate = conn.execute(
            text("SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(:name)"),
            {"name": regclass},
        ).scalar()
        if estimate is not None and estimate >= 0:
            return int(estimate)
    return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def checked_plans(
    config: Config, names: list[str] | None = None, estimate: bool = False, values: bool = False
) -> list[TablePlan]:
    """Both databases reachable and every table valid, before anything moves; `names` narrows
    the configured selection (a name outside it is an error). `values` (config check) also
    scans the data, which each table run does again for itself, so a bad table fails alone."""
    source = make_engine(config.source_url, "source")
    target = make_engine(config.target_url, "target")
    try:
        check_connection(source, "source")
        check_connection(target, "target")
        check_schemas(source, config.source_schema, target, config.target_schema)
        selected = select_tables(config, source)
        refuse_collisions(selected, target.dialect, "tables")
        unknown = [n for n in names or [] if n not in selected]
        if unknown:
            raise UnknownTableError(f"table {unknown[0]!r} is not among the configured tables")
        return plan_tables(
            config, source, names or selected, estimate=estimate, target=target.dialect, values=values
        )
    finally:
        source.dispose()
        target.dispose()
