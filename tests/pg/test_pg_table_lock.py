"""Loads of one table never overlap in a PostgreSQL target (an advisory lock): without it, the
later swap kept the earlier one's rows and failed with twice the rows staged."""

from __future__ import annotations

import os
import secrets

from flows.config import load_config
from flows.demo.sample import build_sample, write_sample_config
from tests.pg.conftest import config_url
from tests.table_lock_check import two_loads_at_once


def test_two_loads_of_one_table_take_turns(pg_cluster, tmp_path):
    tag = secrets.token_hex(4)
    pg_cluster.create_database(f"tgt_{tag}")
    build_sample(f"sqlite:///{tmp_path / 'source.db'}", big_rows=50_000)
    path = write_sample_config(
        tmp_path / "etlctl.toml", f"sqlite:///{tmp_path / 'source.db'}", config_url(pg_cluster, f"tgt_{tag}")
    )
    two_loads_at_once(load_config(path), dict(os.environ), tmp_path)
