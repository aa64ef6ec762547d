"""Checks that refuse a load before any row moves, when it would fail or change data silently.

`checked_plans` (plan.py) runs the schema checks for `etlctl config check`, `etlctl load` and
`etlctl run`: schemas that do not exist, names that the target would fold together, tables
without columns, column types with no faithful target type. `check_values` reads the data: SQLite
values that do not fit the type the target declares for them (SQLite does not enforce declared
types; PostgreSQL refuses them or converts them silently), PostgreSQL dates Python cannot hold,
and duplicate incremental keys. `config check` runs it for every table, each table run for its own.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

from sqlalchemy import (
    BigInteger,
    Boolean,
    Connection,
    Date,
    DateTime,
    Double,
    Engine,
    LargeBinary,
    Numeric,
    String,
    Table,
    Time,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import JSON

from flows.errors import ConfigError, DuplicateKeyError, UnsupportedError
from flows.etl.typemap import column_mapping, describe

INTERNAL_PREFIX = "_etlctl_"
POSTGRES_NAME_BYTES = 63  # NAMEDATALEN - 1: PostgreSQL truncates longer identifiers
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def check_schemas(
    source: Engine, source_schema: str | None, target: Engine, target_schema: str | None
) -> None:
    """A configured schema that does not exist would fail every table (target) or find none (source)."""
    for engine, schema, role in ((source, source_schema, "source"), (target, target_schema, "target")):
        if schema is not None and schema not in inspect(engine).get_schema_names():
            raise ConfigError(
                f"{role} schema {schema!r} does not exist in {engine.url}: create it, or fix [{role}] schema"
            )


def target_name(name: str, dialect: Dialect) -> str:
    """The name as the target database resolves it: SQLite ignores ASCII case, PostgreSQL keeps
    63 bytes."""
    if dialect.name == "sqlite":
        return name.translate(_ASCII_LOWER)
    if dialect.name == "postgresql":
        return name.encode()[:POSTGRES_NAME_BYTES].decode(errors="ignore")
    return name


def refuse_collisions(names: Iterable[str], dialect: Dialect, what: str, where: str = "") -> None:
    """Two names the target resolves to one object would load into one table (or column)."""
    seen: dict[str, str] = {}
    for name in names:
        key = target_name(name, dialect)
        if key.startswith(INTERNAL_PREFIX) and what == "tables":
            raise ConfigError(
                f"source table {name!r} would be the same table as etlctl's own {key!r} in the "
                f"{dialect.name} target; exclude it"
            )
        if key in seen:
            raise ConfigError(
                f"source {what} {seen[key]!r} and {name!r}{where} are the same name in the {dialect.name} "
                f"target ({_why(dialect)}); rename one in the source or leave one out"
            )
        seen[key] = name


def _why(dialect: Dialect) -> str:
    if dialect.name == "sqlite":
        return "SQLite names ignore case"
    return f"PostgreSQL keeps only the first {POSTGRES_NAME_BYTES} bytes of a name"


def check_table(conn: Connection, table: Table, target: Dialect) -> None:
    """The table can be created in the target, every column with a faithful type."""
    if not len(table.columns):
        raise UnsupportedError(f"table {table.name!r} has no columns: there is nothing to load; leave it out")
    refuse_collisions((c.name for c in table.columns), target, "columns", f" of table {table.name!r}")
    for column in table.columns:
        column_mapping(column, conn.dialect, target)  # raises UnsupportedError naming the column


def refuse_misfits(conn: Connection, table: Table, target: Dialect, skip: Collection[str] = ()) -> None:
    """The first value the target cannot hold unchanged: SQLite stores any value in any column;
    PostgreSQL dates and timestamps reach past what Python (and so etlctl) can represent.

    One scan of the table counts, per column, the values outside what the target type accepts;
    the columns in `skip` are left out (fit.py proves them during the copy).
    """
    preparer = conn.dialect.identifier_preparer
    misfit = _misfit if conn.dialect.name == "sqlite" else _pg_misfit
    conditions = {
        c.name: misfit(preparer.quote(c.name), column_mapping(c, conn.dialect, target).target)
        for c in table.columns
        if c.name not in skip
    }
    checked = {name: cond for name, cond in conditions.items() if cond}
    if not checked:
        return
    sums = ", ".join(f"sum(CASE WHEN {cond} THEN 1 ELSE 0 END)" for cond in checked.values())
    source = preparer.format_table(table)
    counts = conn.execute(text(f"SELECT {sums} FROM {source}")).one()
    for (name, cond), count in zip(checked.items(), counts, strict=True):
        if count:
            column = preparer.quote(name)
            example, kind = conn.execute(
                text(f"SELECT {_example(conn.dialect, column)} FROM {source} WHERE {cond} LIMIT 1")
            ).one()
            declared = column_mapping(table.c[name], conn.dialect, target).target
            raise UnsupportedError(
                f"{describe(table.c[name])}: {count} value(s) cannot arrive unchanged in {target.name} "
                f"{declared.compile(dialect=target)}, e.g. {example} ({kind}); "
                "fix them in the source or leave the table out"
            )


def _example(dialect: Dialect, column: str) -> str:
    if dialect.name == "sqlite":
        return f"substr(quote({column}), 1, 40), typeof({column})"
    return f"left({column}::text, 40), pg_typeof({column})::text"


def _pg_misfit(column: str, declared: object) -> str | None:
    """Dates and timestamps Python cannot hold: infinity, BC, years past 9999."""
    if isinstance(declared, Date | DateTime):
        return f"NOT isfinite({column}) OR extract(year from {column}) NOT BETWEEN 1 AND 9999"
    return None


def _misfit(column: str, declared: object) -> str | None:
    """SQL that is true for a SQLite value the target type `declared` would refuse or change."""
    kind = f"typeof({column})"
    has_nul = f"instr({column}, char(0)) > 0"
    if isinstance(declared, Boolean):
        return f"{kind} <> 'null' AND ({kind} <> 'integer' OR {column} NOT IN (0, 1))"
    if isinstance(declared, BigInteger):
        return f"{kind} NOT IN ('integer', 'null')"
    special = f"({kind} = 'text' AND {column} IN ('NaN', 'Infinity', '-Infinity'))"
    if isinstance(declared, Double):
        return f"{kind} NOT IN ('integer', 'real', 'null') AND NOT {special}"
    if isinstance(declared, Numeric):
        bad = f"{kind} NOT IN ('integer', 'real', 'null') AND NOT ({kind} = 'text' AND {column} = 'NaN')"
        if declared.precision is not None:
            scale = declared.scale or 0
            limit = f"1e{declared.precision - scale}"
            rounded = f"abs({column} - round({column}, {scale})) > 1e-9 * (abs({column}) + 1)"
            bad += f" OR ({kind} IN ('integer', 'real') AND (abs({column}) >= {limit} OR {rounded}))"
        return bad
    if isinstance(declared, DateTime | Date | Time):
        return f"{kind} NOT IN ('text', 'null') OR ({kind} = 'text' AND NOT ({_temporal(column, declared)}))"
    if isinstance(declared, JSON):
        return (
            f"{kind} NOT IN ('text', 'null') OR ({kind} = 'text' AND (json_valid({column}) = 0 OR {has_nul}))"
        )
    if isinstance(declared, String):
        bad = f"{kind} NOT IN ('text', 'null') OR ({kind} = 'text' AND {has_nul})"
        if declared.length is not None:
            bad += f" OR length({column}) > {declared.length}"
        return bad
    if isinstance(declared, LargeBinary):
        return f"{kind} NOT IN ('blob', 'null')"
    return None


_TIME = "[0-9][0-9]:[0-9][0-9]"
_DAY = "[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]"
_MICROSECONDS = "[0-9]" * 6


def _temporal(column: str, declared: object) -> str:
    """ISO text that SQLite parses and that has no offset PostgreSQL would drop.

    The common case first, because SQLite stops at the first true branch of an OR: a value in
    SQLAlchemy's own form with a day of the month up to 28 is valid by its shape alone, which
    costs a third of parsing it with date() and datetime() (the scan reads every row).
    """
    no_zone = f"{column} NOT GLOB '*[+Zz]*' AND substr({column}, 11) NOT GLOB '*-*'"
    plain_day = (
        f"substr({column}, 6, 2) BETWEEN '01' AND '12' AND substr({column}, 9, 2) BETWEEN '01' AND '28'"
    )
    if isinstance(declared, DateTime):
        day = f"substr({column}, 1, 10)"
        shape = f"{column} GLOB '{_DAY} [0-2][0-9]:[0-5][0-9]:[0-5][0-9].{_MICROSECONDS}'"
        canonical = f"{shape} AND {plain_day} AND substr({column}, 12, 2) <= '23'"
        parsed = f"date({day}, '+0 days') IS {day} AND datetime({column}) IS NOT NULL AND {no_zone}"
        return f"({canonical}) OR ({parsed})"
    if isinstance(declared, Date):
        canonical = f"{column} GLOB '{_DAY}' AND {plain_day}"
        # 2024-02-30 becomes 03-01: PostgreSQL refuses it
        return f"({canonical}) OR (date({column}, '+0 days') IS {column})"
    return f"{column} GLOB '{_TIME}*' AND time({column}) IS NOT NULL AND {column} NOT GLOB '*[+Zz-]*'"


def check_values(
    conn: Connection,
    table: Table,
    target: Dialect,
    key: Sequence[str] | None,
    dates: bool = True,
    skip: Collection[str] = (),
) -> None:
    """What only the data can tell, in the caller's read transaction: values the target cannot
    hold, and an incremental key (`key`) that is not unique in the source. `dates=False` skips
    the scan of a PostgreSQL table for dates Python cannot hold (a table run finds them anyway,
    when it reads them); the columns in `skip` are checked during the copy (fit.py)."""
    if conn.dialect.name == "sqlite" and target.name != "sqlite":
        refuse_misfits(conn, table, target, skip)
    if conn.dialect.name == "postgresql" and dates:
        refuse_misfits(conn, table, target, skip)
    if key:
        refuse_duplicate_keys(conn, table, key)


def refuse_duplicate_keys(conn: Connection, table: Table, key: Sequence[str]) -> None:
    """An upsert by a key that is not unique keeps one row per key: the target would lose rows.

    Free when the source declares the key (or a part of it) unique; otherwise one GROUP BY.
    """
    if _declared_unique(conn, table, key):
        return
    columns = [table.c[name] for name in key]
    query = select(*columns, func.count()).group_by(*columns).having(func.count() > 1)
    found = conn.execute(query.order_by(*columns).limit(3)).all()
    if found:
        examples = ", ".join(f"{_key_text(row[:-1])} ({row[-1]} rows)" for row in found)
        raise DuplicateKeyError(
            f"table {table.name!r}: primary_key ({', '.join(key)}) is not unique in the source, "
            f"e.g. {examples}; an upsert would keep one row per key. Set a unique primary_key"
        )


def _declared_unique(conn: Connection, table: Table, key: Sequence[str]) -> bool:
    wanted = set(key)
    declared = [{c.name for c in table.primary_key.columns}]
    inspector = inspect(conn)
    declared += [set(u["column_names"]) for u in inspector.get_unique_constraints(table.name, table.schema)]
    declared += [
        set(i["column_names"])
        for i in inspector.get_indexes(table.name, table.schema)
        if i.get("unique") and None not in i["column_names"]
    ]
    return any(names and names <= wanted for names in declared)


def _key_text(values: Sequence[object]) -> str:
    return repr(values[0]) if len(values) == 1 else repr(tuple(values))
