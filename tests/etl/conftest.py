"""Real SQLite files: a sample source built once per session, copied for tests that change it."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from flows.config import Config, load_config
from flows.demo.sample import build_sample, write_sample_config

BIG_ROWS = 200_000


@pytest.fixture(scope="session")
def pristine_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample source with its 200k-row table; never written to after the build."""
    path = tmp_path_factory.mktemp("sample") / "source.db"
    build_sample(f"sqlite:///{path}", big_rows=BIG_ROWS)
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


@pytest.fixture
def workdir(tmp_path: Path, pristine_source: Path) -> Path:
    """A private copy of the source and an empty target location."""
    shutil.copy(pristine_source, tmp_path / "source.db")
    return tmp_path


@pytest.fixture
def config(workdir: Path) -> Config:
    path = write_sample_config(
        workdir / "etlctl.toml", f"sqlite:///{workdir / 'source.db'}", f"sqlite:///{workdir / 'target.db'}"
    )
    return load_config(path)
