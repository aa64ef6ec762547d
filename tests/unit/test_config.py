"""The configuration file: defaults, overrides, secrets from the environment, masked URLs."""

from __future__ import annotations

import re

import pytest

from flows.config import POOL_ENVS, PrefectSettings, load_config
from flows.errors import ConfigError

BASE = """
[source]
url = "postgresql+psycopg://etl:${ETLCTL_TEST_PW}@db.example:5432/ops"
schema = "public"
[target]
url = "sqlite:///warehouse.db"
[tables]
discover = true
exclude = ["tmp_*"]
[tables.defaults]
chunk_size = 1000
[table."order lines"]
mode = "incremental"
cursor = "changed at"
primary_key = "line id"
[prefect]
table_pool = "nightly"
database_limit = 5
"""


def test_defaults_overrides_and_secret_expansion(tmp_path, monkeypatch):
    monkeypatch.setenv("ETLCTL_TEST_PW", "p@ss:word/1")
    path = tmp_path / "etlctl.toml"
    path.write_text(BASE)
    config = load_config(path)
    assert config.source_url.password == "p@ss:word/1"
    assert "p@ss" not in str(config.source_url) and "***" in str(config.source_url)
    assert "p@ss" not in repr(config)
    assert config.source_schema == "public"
    lines = config.options_for("order lines")
    assert (lines.mode, lines.cursor, lines.primary_key, lines.chunk_size) == (
        "incremental",
        "changed at",
        ("line id",),
        1000,
    )
    assert config.options_for("other").mode == "full"
    assert config.prefect == PrefectSettings(table_pool="nightly", cleanup_pool="nightly", database_limit=5)


def test_table_pool_from_the_environment_wins_over_the_file(tmp_path, monkeypatch):
    """--pool > $ETLCTL_POOL > $PREFECT_WORK_POOL > [prefect] table_pool > etl-tables; the
    cleanups follow the table pool unless the file names their own."""
    monkeypatch.setenv("ETLCTL_TEST_PW", "x")
    for name in POOL_ENVS:
        monkeypatch.delenv(name, raising=False)
    named = tmp_path / "named.toml"
    named.write_text(BASE)
    bare = tmp_path / "bare.toml"
    bare.write_text(BASE.split("[prefect]")[0])
    assert (load_config(bare).prefect.table_pool, load_config(bare).prefect.cleanup_pool) == (
        "etl-tables",
    ) * 2
    monkeypatch.setenv("PREFECT_WORK_POOL", "seed-pool")
    assert load_config(bare).prefect.cleanup_pool == "seed-pool"
    assert load_config(named).prefect.table_pool == "seed-pool"
    monkeypatch.setenv("ETLCTL_POOL", "host-pool")
    assert load_config(named).prefect.table_pool == "host-pool"
    own = tmp_path / "own.toml"
    own.write_text(BASE + 'cleanup_pool = "tidy"\n')
    assert (load_config(own).prefect.table_pool, load_config(own).prefect.cleanup_pool) == (
        "host-pool",
        "tidy",
    )


def test_config_found_through_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ETLCTL_TEST_PW", "x")
    path = tmp_path / "from-env.toml"
    path.write_text(BASE)
    monkeypatch.setenv("ETLCTL_CONFIG", str(path))
    assert load_config().path == path


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("[prefect]\nworkers = 0\n", "workers in [prefect] must be at least 1"),
        ('[tables.defaults]\nchunk_size = "big"\n', "chunk_size in [tables.defaults] must be int"),
        ("[table.x]\nprimary_key = 3\n", "primary_key in table 'x' must be a column name"),
    ],
)
def test_invalid_values_are_named(tmp_path, extra, message):
    path = tmp_path / "etlctl.toml"
    tables = "" if extra.startswith("[tables") else '[tables]\nnames = ["x"]\n'
    path.write_text('[source]\nurl = "sqlite:///s.db"\n[target]\nurl = "sqlite:///t.db"\n' + tables + extra)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(path)


def test_nothing_selected_is_an_error(tmp_path):
    path = tmp_path / "etlctl.toml"
    path.write_text('[source]\nurl = "sqlite:///s.db"\n[target]\nurl = "sqlite:///t.db"\n')
    with pytest.raises(ConfigError, match="no tables selected"):
        load_config(path)
