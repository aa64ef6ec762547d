"""Limits a config may set: the PostgreSQL timeouts ([source]/[target] connect_timeout, answer_timeout)
checked against their bounds when the file is read, wherever they are written."""

from __future__ import annotations

import re

import pytest

from flows.config import load_config
from flows.errors import ConfigError
from flows.etl import pg_timeouts

PG = "postgresql+psycopg://etl:pw@127.0.0.1:5432/db"


def _load(tmp_path, source: str, extra: str = ""):
    path = tmp_path / "etlctl.toml"
    path.write_text(
        f'[source]\nurl = "{source}"\n{extra}\n[target]\nurl = "sqlite:///t.db"\n[tables]\nnames = ["t"]\n',
        encoding="utf-8",
    )
    return load_config(path)


@pytest.mark.parametrize(
    ("source", "extra", "message"),
    [
        (PG, "answer_timeout = 0", "answer_timeout in [source] must be between 5 and 86400 seconds, not 0"),
        (PG, "connect_timeout = 1000", "connect_timeout in [source] must be between 1 and 300 seconds"),
        (PG, "connect_timeout = 2.5", "connect_timeout in [source] must be between 1 and 300 seconds"),
        (PG, 'connect_timeout = "5"', "connect_timeout in [source] must be a number of seconds"),
        (PG + "?connect_timeout=0", "", "connect_timeout in [source] must be between 1 and 300"),
        (PG + "?answer_timeout=soon", "", "answer_timeout in [source] must be between 5 and 86400"),
        (PG + "?connect_timeout=5", "connect_timeout = 5", "set both in [source] and in its url"),
        (
            "sqlite:///s.db",
            "connect_timeout = 5",
            "connect_timeout in [source] applies to PostgreSQL through psycopg only",
        ),
    ],
)
def test_bad_timeouts_are_refused_by_name(tmp_path, source, extra, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        _load(tmp_path, source, extra)


def test_defaults_apply_and_the_config_wins(tmp_path):
    url, options, answer = pg_timeouts.engine_options(_load(tmp_path, PG).source_url)
    assert answer == 900 and options["connect_args"]["connect_timeout"] == "10"
    assert options["connect_args"]["keepalives"] == "1"
    url, options, answer = pg_timeouts.engine_options(
        _load(tmp_path, PG, "connect_timeout = 3\nanswer_timeout = 60").source_url
    )
    assert answer == 60 and "answer_timeout" not in url.query and url.query["connect_timeout"] == "3"
    assert "connect_timeout" not in options["connect_args"]


@pytest.mark.parametrize(("value", "ok"), [("0", True), ("30", True), ("-1", False), ("36501", False)])
def test_keep_flow_runs_days_has_bounds(tmp_path, value, ok):
    extra = f"\n[prefect]\nkeep_flow_runs_days = {value}\n"
    path = tmp_path / "etlctl.toml"
    path.write_text(
        '[source]\nurl = "sqlite:///s.db"\n[target]\nurl = "sqlite:///t.db"\n[tables]\nnames = ["t"]\n'
        + extra,
        encoding="utf-8",
    )
    if ok:
        assert load_config(path).prefect.keep_flow_runs_days == int(value)
    else:
        with pytest.raises(
            ConfigError, match=r"keep_flow_runs_days in \[prefect\] must be between 0 and 36500"
        ):
            load_config(path)
