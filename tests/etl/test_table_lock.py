"""Loads of one table never overlap in a SQLite target: the second waits for the first."""

from __future__ import annotations

import os

from tests.table_lock_check import two_loads_at_once


def test_two_loads_of_one_table_take_turns(config, workdir):
    two_loads_at_once(config, dict(os.environ), workdir)
