"""Pure logic, tested without processes so a developer gets feedback in seconds: names of hosts and
workers, the env-file reader, table selection, type mapping, and which hosts count as lost."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy import Column, DateTime, Integer, MetaData, Numeric, String, Table, Text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.types import NullType

from flows.config import Config, PrefectSettings, TableOptions, TableSelection
from flows.errors import ConfigError, UnknownTableError, UnsupportedError
from flows.etl.plan import choose_tables
from flows.etl.typemap import Untyped, adapt_rows, column_mapping, value_adapters
from flows.fleet.envfile import read_env_file
from flows.fleet.naming import WORKER_LABEL, host_of_worker, run_host, variable_name, worker_name
from flows.fleet.worker_exec import worker_command, worker_env

SQLITE, PG = sqlite.dialect(), postgresql.dialect()


@pytest.mark.parametrize(
    ("host", "index", "worker"), [("db", 1, "db-01"), ("db-07", 1, "db-07-01"), ("w", 12, "w-12")]
)
def test_worker_names_round_trip_to_their_host(host, index, worker):
    assert worker_name(host, index) == worker
    assert host_of_worker(worker) == host
    assert run_host({WORKER_LABEL: worker}) == host


def test_a_run_without_a_worker_label_has_no_host():
    assert run_host(None) is None
    assert run_host({"other": "x"}) is None


@pytest.mark.parametrize("bad", ["", "-db", "db host", "db/1", "ä"])
def test_unusable_host_names_are_refused(bad):
    with pytest.raises(ConfigError, match="not a usable host name"):
        variable_name(bad)


def test_inventory_variable_names_fold_to_what_prefect_allows():
    assert variable_name("DB-07.example") == "etlctl_machine_db_07_example"


def test_env_file_reads_like_systemd(tmp_path):
    path = tmp_path / "etlctl.env"
    path.write_text(
        "# comment\n\nPREFECT_API_URL=http://10.0.0.1:4200/api\nexport ETLCTL_POOL = nightly \n"
        "PW='a b#c'\nQUOTED=\"x=y\"\nEMPTY=\n"
    )
    assert read_env_file(path) == {
        "PREFECT_API_URL": "http://10.0.0.1:4200/api",
        "ETLCTL_POOL": "nightly",
        "PW": "a b#c",
        "QUOTED": "x=y",
        "EMPTY": "",
    }


def test_env_file_errors_name_the_line_and_the_file(tmp_path):
    path = tmp_path / "bad.env"
    path.write_text("A=1\nnot a pair\n")
    with pytest.raises(ConfigError, match=r"bad\.env:2: expected KEY=VALUE"):
        read_env_file(path)
    with pytest.raises(ConfigError, match="cannot read env file"):
        read_env_file(tmp_path / "missing.env")


def test_one_worker_command_line_and_environment():
    command = worker_command("db-01", "nightly", 1)
    assert command[1:] == [
        "worker",
        "start",
        "--pool",
        "nightly",
        "--type",
        "etlctl",
        "--limit",
        "1",
        "--name",
        "db-01",
    ]
    env = worker_env({"PREFECT_WORKER_QUERY_SECONDS": "5", "ETLCTL_WORKER_NAME": "stale"}, "db-01")
    assert env["PREFECT_WORKER_QUERY_SECONDS"] == "5"  # the operator's value wins over the default
    assert env["PREFECT_WORKER_HEARTBEAT_SECONDS"] == "10"
    assert env["ETLCTL_WORKER_NAME"] == "db-01"  # the slot's own name always wins


def _config(selection: TableSelection, overrides: dict[str, TableOptions] | None = None) -> Config:
    from sqlalchemy.engine import make_url

    return Config(
        path=None,  # type: ignore[arg-type]
        source_url=make_url("sqlite://"),
        target_url=make_url("sqlite://"),
        source_schema=None,
        target_schema=None,
        selection=selection,
        defaults=TableOptions(),
        overrides=overrides or {},
        prefect=PrefectSettings(),
    )


EXISTING = ["orders", "order_lines", "tmp_orders", "_etlctl_state", "customers"]


def test_discover_applies_include_then_exclude_and_skips_etlctl_tables():
    selection = TableSelection(discover=True, include=("*",), exclude=("tmp_*",), names=())
    assert choose_tables(_config(selection), EXISTING) == ["customers", "order_lines", "orders"]
    narrow = replace(selection, include=("order*",))
    assert choose_tables(_config(narrow), EXISTING) == ["order_lines", "orders"]


def test_named_tables_and_overrides_must_exist():
    selection = TableSelection(discover=False, include=(), exclude=(), names=("orders",))
    overrides = {"customers": TableOptions(mode="full")}
    assert choose_tables(_config(selection, overrides), EXISTING) == ["customers", "orders"]
    with pytest.raises(UnknownTableError, match="'ordrs' is not in the source"):
        choose_tables(_config(replace(selection, names=("ordrs",))), EXISTING)


def _column(kind, dialect=SQLITE) -> Column:
    table = Table("t", MetaData(), Column("c", kind))
    table.info["dialect"] = dialect  # as plan.reflect_table records it
    return table.c.c


def test_types_map_to_equivalents_across_dialects_and_stay_within_one():
    to_pg = column_mapping(_column(Numeric(12, 2)), SQLITE, PG)
    assert str(to_pg.target.compile(dialect=PG)) == "NUMERIC(12, 2)"
    assert isinstance(column_mapping(_column(postgresql.INTERVAL(), PG), PG, PG).target, postgresql.INTERVAL)


def test_values_python_would_change_are_read_as_text():
    assert column_mapping(_column(postgresql.JSON(), PG), PG, SQLITE).as_text
    assert column_mapping(_column(postgresql.INTERVAL(), PG), PG, PG).as_text
    assert not column_mapping(_column(Integer(), PG), PG, PG).as_text


def test_untyped_columns_stay_untyped_in_sqlite_and_are_refused_elsewhere():
    assert isinstance(column_mapping(_column(NullType()), SQLITE, SQLITE).target, Untyped)
    with pytest.raises(UnsupportedError, match=r"column 'c' of table 't' .* has no declared type"):
        column_mapping(_column(NullType()), SQLITE, PG)


def test_only_columns_that_need_it_get_a_value_adapter():
    table = Table(
        "t", MetaData(), Column("id", Integer), Column("at", DateTime(timezone=True)), Column("s", String),
        Column("x", Text),
    )  # fmt: skip
    table.info["dialect"] = PG
    to_sqlite = value_adapters(table, SQLITE)
    assert to_sqlite[0] is None and to_sqlite[2] is None and to_sqlite[3] is None
    assert to_sqlite[1] is not None
    assert adapt_rows([(1, None, "a", "b")], to_sqlite) == [(1, None, "a", "b")]


def test_a_host_is_lost_only_when_the_pool_knows_it_and_none_of_its_workers_is_online():
    from flows.rescue import lost_hosts

    workers = {"db-01": False, "db-02": False, "db-07-01": True, "app-01": True, "app-02": False}
    assert lost_hosts({"db", "db-07", "app", "stranger"}, workers) == {"db"}
    assert lost_hosts({"db"}, {**workers, "db-02": True}) == set()


@pytest.mark.parametrize(
    ("live", "draining", "verdict"),
    [
        (["h-01", "h-02"], False, "healthy"),
        (["h-01"], False, "degraded"),
        ([], False, "down"),
        (["h-01", "h-02"], True, "draining"),
        (["h-01"], True, "draining"),
        ([], True, "draining"),
    ],
)
def test_a_drained_host_shows_draining_however_many_workers_are_online(live, draining, verdict):
    from flows.fleet.machines import Machine, MachineStatus

    machine = Machine("h", 2, "etl-tables", "systemd", "2026-11-29T00:00:00+00:00", draining=draining)
    assert MachineStatus(machine, live, None, 0).verdict == verdict


def test_the_next_chunk_is_fetched_while_the_caller_still_holds_this_one():
    import threading

    from flows.etl.driver import _ahead

    second_asked, closed = threading.Event(), threading.Event()

    def chunks():
        try:
            yield [(1,)]
            second_asked.set()
            yield [(2,)]
            yield [(3,)]
        finally:
            closed.set()

    rows = _ahead(chunks())
    assert next(rows) == [(1,)]
    assert second_asked.wait(10), "chunk 2 was not fetched while chunk 1 was being written"
    assert next(rows) == [(2,)]
    rows.close()  # a load that stops early (an error in the writer) still closes the cursor
    assert closed.is_set()
