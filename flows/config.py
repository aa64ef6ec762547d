"""The TOML configuration: `load_config(path)` reads it once and every other module takes a `Config`.

Secrets stay out of the file: `${NAME}` in any string is replaced by the environment variable NAME
when the file is read, and database URLs are kept as SQLAlchemy `URL` objects, whose `str()` masks
the password, so a URL can be logged or shown without leaking it.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from flows.errors import ConfigError
from flows.limits import WorkerLimits, parse_limits

CONFIG_ENV = "ETLCTL_CONFIG"
DEFAULT_CONFIG = "etlctl.toml"
MODES = ("full", "incremental")
DEFAULT_WORKERS = 3  # worker processes per host
DEFAULT_POOL = "etl-tables"  # the table pool when neither --pool, the environment nor the config names one
# A host's table pool from its environment (env file), over [prefect] table_pool: ETLCTL_POOL, then
# PREFECT_WORK_POOL (the name a Prefect deployment's operators already use).
POOL_ENVS = ("ETLCTL_POOL", "PREFECT_WORK_POOL")
MAX_KEEP_DAYS = 36500
MAX_START_TIMEOUT = 86400.0  # a day: longer is a forgotten batch, not a slow start
# PostgreSQL waits (flows.etl.pg_timeouts): seconds, default and the bounds a config may set
DEFAULT_CONNECT_TIMEOUT = 10
DEFAULT_ANSWER_TIMEOUT = 900
ANSWER_TIMEOUT_KEY = "answer_timeout"
TIMEOUT_BOUNDS = {"connect_timeout": (1, 300), ANSWER_TIMEOUT_KEY: (5, 86400)}
# One chunk is held in memory and written in one statement (incremental: one transaction); past a
# million rows a chunk costs gigabytes of memory and buys no speed.
MAX_CHUNK_SIZE = 1_000_000
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class TableOptions:
    """How one table moves; `[tables.defaults]` gives the base, `[table."name"]` overrides it."""

    mode: Literal["full", "incremental"] = "full"
    cursor: str | None = None
    primary_key: tuple[str, ...] = ()
    chunk_size: int = 5000


@dataclass(frozen=True)
class TableSelection:
    """Which source tables the job moves: an explicit list, or every table matching the patterns."""

    discover: bool = False
    names: tuple[str, ...] = ()
    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True)
class PrefectSettings:
    """Names and limits on the Prefect side, shared by `etlctl setup`, `deploy`, workers and flows."""

    table_pool: str = DEFAULT_POOL
    orchestrator_pool: str = "etl-orchestrator"
    cleanup_pool: str = DEFAULT_POOL  # when unset in the file: the table pool, whose workers run them
    database_limit: int = 3
    poll_seconds: float = 2.0
    start_timeout: float = 300.0  # how long `etlctl run` waits for a worker on an empty pool
    workers: int = DEFAULT_WORKERS
    keep_flow_runs_days: int = 30  # cleanup-flow-1 deletes finished flow runs older than this


@dataclass(frozen=True)
class Config:
    path: Path
    source_url: URL
    target_url: URL
    source_schema: str | None = None
    target_schema: str | None = None
    selection: TableSelection = field(default_factory=TableSelection)
    defaults: TableOptions = field(default_factory=TableOptions)
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    prefect: PrefectSettings = field(default_factory=PrefectSettings)
    workers: WorkerLimits = field(default_factory=WorkerLimits)  # [workers]: flows.limits

    def options_for(self, table: str) -> TableOptions:
        """The defaults with this table's overrides applied; validated when the file was read."""
        return _options(self.defaults, self.overrides.get(table, {}), f"table {table!r}")


def pool_from_env(environ: dict[str, str] | None = None) -> str | None:
    """The table pool the environment names ($ETLCTL_POOL, else $PREFECT_WORK_POOL), if any."""
    env = os.environ if environ is None else environ
    return next((env[name] for name in POOL_ENVS if env.get(name)), None)


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """`--config`, else $ETLCTL_CONFIG, else ./etlctl.toml: the same lookup on every host."""
    return Path(explicit or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG).expanduser().resolve()


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read and validate the file; raise ConfigError naming the first problem found."""
    resolved = config_path(path)
    try:
        raw = tomllib.loads(resolved.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {resolved} not found (pass --config or set {CONFIG_ENV})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {resolved} is not valid TOML: {exc}") from None
    urls = {
        key: raw.get(key, {}).get("url") for key in ("source", "target") if isinstance(raw.get(key), dict)
    }
    raw = _expand_env(raw)
    for key, url in urls.items():
        raw[key]["url"] = _expand_env(url, quote_values=True)
    _only(raw, {"source", "target", "tables", "table", "prefect", "workers"}, "the config file")
    source = _section(raw, "source", required=True)
    target = _section(raw, "target", required=True)
    _only(source, {"url", "schema", *TIMEOUT_BOUNDS}, "[source]")
    _only(target, {"url", "schema", *TIMEOUT_BOUNDS}, "[target]")
    tables = _section(raw, "tables")
    _only(tables, {"discover", "names", "include", "exclude", "defaults"}, "[tables]")
    selection = TableSelection(
        discover=_typed(tables, "discover", bool, False, "[tables]"),
        names=tuple(_typed(tables, "names", list, [], "[tables]")),
        include=tuple(_typed(tables, "include", list, ["*"], "[tables]")),
        exclude=tuple(_typed(tables, "exclude", list, [], "[tables]")),
    )
    defaults = _options(TableOptions(), _section(tables, "defaults"), "[tables.defaults]")
    overrides = _section(raw, "table")
    for name, opts in overrides.items():
        if not isinstance(opts, dict):
            raise ConfigError(f'[table."{name}"] must be a table of options')
        _options(defaults, opts, f"table {name!r}")
    if not selection.discover and not selection.names and not overrides:
        raise ConfigError("no tables selected: set [tables] discover = true, or list them in [tables] names")
    return Config(
        path=resolved,
        source_url=_with_timeouts(_url(source, "[source]"), source, "[source]"),
        target_url=_with_timeouts(_url(target, "[target]"), target, "[target]"),
        source_schema=source.get("schema"),
        target_schema=target.get("schema"),
        selection=selection,
        defaults=defaults,
        overrides=overrides,
        prefect=_prefect(_section(raw, "prefect")),
        workers=parse_limits(_section(raw, "workers")),
    )


def worker_limits(path: str | os.PathLike[str] | None = None) -> WorkerLimits:
    """Only the [workers] section, for a worker at its start: none when there is no file."""
    resolved = config_path(path)
    try:
        raw = tomllib.loads(resolved.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return WorkerLimits()
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {resolved} is not valid TOML: {exc}") from None
    return parse_limits(_expand_env(_section(raw, "workers")))


def _expand_env(value: Any, quote_values: bool = False) -> Any:
    """Replace ${NAME} everywhere; inside URLs the value is %-quoted so any password parses."""
    if isinstance(value, str):
        return _ENV_REF.sub(lambda m: _env_value(m.group(1), quote_values), value)
    if isinstance(value, dict):
        return {k: _expand_env(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v) for v in value]
    return value


def _env_value(name: str, quote_values: bool) -> str:
    if name not in os.environ:
        raise ConfigError(f"environment variable {name} is referenced in the config but not set")
    return quote(os.environ[name], safe="") if quote_values else os.environ[name]


def _section(raw: dict[str, Any], key: str, required: bool = False) -> dict[str, Any]:
    value = raw.get(key)
    if value is None:
        if required:
            raise ConfigError(f"config has no [{key}] section")
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"[{key}] must be a table, not {type(value).__name__}")
    return value


def _only(raw: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} in {where} (allowed: {', '.join(sorted(allowed))})")


def _typed(raw: dict[str, Any], key: str, kind: type, default: Any, where: str) -> Any:
    value = raw.get(key, default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{key} in {where} must be {kind.__name__}, not {type(value).__name__}")
    return value


def _url(raw: dict[str, Any], where: str) -> URL:
    value = raw.get("url")
    if not isinstance(value, str) or not value:
        raise ConfigError(f'{where} needs url = "dialect://..."')
    try:
        return make_url(value)
    except ArgumentError:
        raise ConfigError(f"{where} url is not a SQLAlchemy database URL") from None


def _with_timeouts(url: URL, raw: dict[str, Any], where: str) -> URL:
    """The URL with the section's PostgreSQL timeouts in its query, checked against their bounds;
    the same keys written into the URL itself (`?connect_timeout=5`) are checked alike."""
    given = {key: raw[key] for key in TIMEOUT_BOUNDS if key in raw}
    psycopg = url.get_backend_name() == "postgresql" and url.get_driver_name() == "psycopg"
    if given and not psycopg:
        raise ConfigError(f"{', '.join(given)} in {where} applies to PostgreSQL through psycopg only")
    for key, value in given.items():
        if key in url.query:
            raise ConfigError(f"{key} is set both in {where} and in its url; keep one")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key} in {where} must be a number of seconds")
    url = url.update_query_dict({key: str(value) for key, value in given.items()})
    for key, (low, high) in TIMEOUT_BOUNDS.items():
        if key not in url.query or not psycopg:
            continue
        text = str(url.query[key])
        try:
            seconds = int(text) if key == "connect_timeout" else float(text)  # libpq: whole seconds
        except ValueError:
            seconds = float("nan")
        if not low <= seconds <= high:
            raise ConfigError(
                f"{key} in {where} must be between {low} and {high} seconds, not {url.query[key]}"
            )
    return url


def _options(base: TableOptions, raw: dict[str, Any], where: str) -> TableOptions:
    _only(raw, {"mode", "cursor", "primary_key", "chunk_size"}, where)
    mode = _typed(raw, "mode", str, base.mode, where)
    if mode not in MODES:
        raise ConfigError(f"mode in {where} must be one of {', '.join(MODES)}, not {mode!r}")
    cursor = raw.get("cursor", base.cursor)
    if cursor is not None and not isinstance(cursor, str):
        raise ConfigError(f"cursor in {where} must be a column name")
    pk = raw.get("primary_key", list(base.primary_key))
    if isinstance(pk, str):
        pk = [pk]
    if not isinstance(pk, list) or not all(isinstance(c, str) for c in pk):
        raise ConfigError(f"primary_key in {where} must be a column name or a list of them")
    chunk = _typed(raw, "chunk_size", int, base.chunk_size, where)
    if not 1 <= chunk <= MAX_CHUNK_SIZE:
        raise ConfigError(f"chunk_size in {where} must be between 1 and {MAX_CHUNK_SIZE}, not {chunk}")
    if mode == "incremental" and not cursor:
        raise ConfigError(f'{where} is incremental but has no cursor column (set cursor = "...")')
    return replace(base, mode=mode, cursor=cursor, primary_key=tuple(pk), chunk_size=chunk)


def _prefect(raw: dict[str, Any]) -> PrefectSettings:
    where = "[prefect]"
    base = PrefectSettings()
    _only(raw, set(base.__dataclass_fields__), where)
    values = {
        name: _typed(raw, name, type(getattr(base, name)), getattr(base, name), where)
        for name in base.__dataclass_fields__
    }
    for name in ("database_limit", "workers"):
        if values[name] < 1:
            raise ConfigError(f"{name} in {where} must be at least 1")
    values["table_pool"] = pool_from_env() or values["table_pool"]
    if "cleanup_pool" not in raw:
        values["cleanup_pool"] = values["table_pool"]
    if not 0 < values["start_timeout"] <= MAX_START_TIMEOUT:
        raise ConfigError(f"start_timeout in {where} must be between 0 and {MAX_START_TIMEOUT} seconds")
    if not 0 <= values["keep_flow_runs_days"] <= MAX_KEEP_DAYS:
        raise ConfigError(f"keep_flow_runs_days in {where} must be between 0 and {MAX_KEEP_DAYS}")
    return PrefectSettings(**values)
