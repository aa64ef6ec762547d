"""Full mode on the whole sample: every table arrives exactly, reruns change nothing, schemas evolve."""

from __future__ import annotations

from sqlalchemy import Numeric, inspect, text

from flows.demo.sample import INCREMENTAL_TABLES
from flows.etl.batch import run_tables
from flows.etl.step import run_table
from tests.etl.conftest import BIG_ROWS
from tests.etl.dbs import engine_for, fingerprints, user_tables


def test_every_table_equals_its_source(config, workdir):
    results = run_tables(config, [])
    assert [r.outcome for r in results] == ["success"] * len(results)
    source, target = engine_for(workdir / "source.db"), engine_for(workdir / "target.db")
    assert len(user_tables(source)) >= 20
    assert fingerprints(target) == fingerprints(source)
    by_table = {r.table: r for r in results}
    assert by_table["measurements"].rows_written == BIG_ROWS
    assert {"order details", "select", "Ünïcode täble"} <= set(by_table)


def test_rerun_replaces_rather_than_appends(config, workdir):
    full = [t for t in ("products", "access_log", "measurements") if t not in INCREMENTAL_TABLES]
    run_tables(config, full)
    first = fingerprints(engine_for(workdir / "target.db"))
    run_tables(config, full)
    assert fingerprints(engine_for(workdir / "target.db")) == first
    with engine_for(workdir / "target.db").connect() as conn:
        runs = conn.execute(text("SELECT count(*) FROM _etlctl_runs")).scalar_one()
    assert runs == 2 * len(full)


def test_column_names_and_types_match_the_source(config, workdir):
    run_tables(config, [])
    source, target = inspect(engine_for(workdir / "source.db")), inspect(engine_for(workdir / "target.db"))
    for table in user_tables(engine_for(workdir / "source.db")):
        expected = [(c["name"], str(c["type"]), c["nullable"]) for c in source.get_columns(table)]
        actual = [(c["name"], str(c["type"]), c["nullable"]) for c in target.get_columns(table)]
        assert actual == expected, table
    balance = {c["name"]: c["type"] for c in target.get_columns("customers")}["balance"]
    assert isinstance(balance, Numeric) and (balance.precision, balance.scale) == (12, 2)


def test_new_source_column_is_added_to_target(config, workdir):
    run_table(config, "products")
    with engine_for(workdir / "source.db").begin() as conn:
        conn.execute(text('ALTER TABLE products ADD COLUMN "shelf life (days)" INTEGER'))
        conn.execute(text('UPDATE products SET "shelf life (days)" = id % 30'))
    result = run_table(config, "products")
    assert result.outcome == "success"
    source, target = engine_for(workdir / "source.db"), engine_for(workdir / "target.db")
    assert "shelf life (days)" in {c["name"] for c in inspect(target).get_columns("products")}
    assert fingerprints(target)["products"] == fingerprints(source)["products"]
