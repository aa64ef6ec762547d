"""Which tables move and how: the configuration checked against the source's real schema.

The orchestrator, `etlctl config check` and every table run ask the same questions here, so a typo in
a table or column name fails the same way everywhere: before any row moves.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, MetaData, Table, func, inspect, select, text
from sqlalchemy.exc import NoSuchTableError

from flows.config import Config, TableOptions
from flows.errors import ConfigError, UnknownTableError
from flows.etl.engines import check_connection, make_engine

INTERNAL_PREFIX = "_etlctl_"


@dataclass(frozen=True)
class TablePlan:
    """One table as the step will move it; `rows` is an estimate for display only."""

    name: str
    options: TableOptions
    primary_key: tuple[str, ...]
    rows: int | None = None


def select_tables(config: Config, engine: Engine) -> list[str]:
    """The table names the job covers, in a stable order, each checked to exist in the source."""
    existing = [
        name
        for name in inspect(engine).get_table_names(schema=config.source_schema)
        if not name.startswith(INTERNAL_PREFIX)
    ]
    sel = config.selection
    if sel.discover:
        chosen = [
            name
            for name in existing
            if any(fnmatch.fnmatchcase(name, p) for p in sel.include)
            and not any(fnmatch.fnmatchcase(name, p) for p in sel.exclude)
        ]
    else:
        chosen = list(dict.fromkeys([*sel.names, *config.overrides]))
    known = set(existing)
    for name in [*chosen, *config.overrides]:
        if name not in known:
            raise UnknownTableError(f"table {name!r} is not in the source database")
    return sorted(chosen)


def reflect_table(conn: Connection, name: str, schema: str | None) -> Table:
    """The source table as the database describes it now; UnknownTableError if it is gone."""
    try:
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
    config: Config, engine: Engine, names: list[str] | None = None, estimate: bool = True
) -> list[TablePlan]:
    """Plans for `names` (default: every selected table), each checked against the source schema.

    Checking every table before the first one moves keeps a typo from leaving half a batch loaded.
    """
    wanted = names if names is not None else select_tables(config, engine)
    plans = []
    with engine.connect() as conn:
        for name in wanted:
            table = reflect_table(conn, name, config.source_schema)
            options = config.options_for(name)
            key = primary_key_for(table, options)
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


def checked_plans(config: Config, names: list[str] | None = None, estimate: bool = False) -> list[TablePlan]:
    """Both databases reachable and every table valid, before anything moves; `names` narrows
    the configured selection (a name outside it is an error)."""
    source = make_engine(config.source_url, "source")
    target = make_engine(config.target_url, "target")
    try:
        check_connection(source, "source")
        check_connection(target, "target")
        selected = select_tables(config, source)
        unknown = [n for n in names or [] if n not in selected]
        if unknown:
            raise UnknownTableError(f"table {unknown[0]!r} is not among the configured tables")
        return plan_tables(config, source, names or selected, estimate=estimate)
    finally:
        source.dispose()
        target.dispose()
