"""Bad input through the real `etlctl` executable: one line on stderr, the documented exit code,
and the target exactly as it was."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.etl.dbs import engine_for, fingerprints

ETLCTL = str(Path(sys.executable).with_name("etlctl"))


def etlctl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ETLCTL, *args], capture_output=True, text=True, env={**os.environ, **(env or {})}, check=False
    )


@pytest.fixture
def loaded(config, workdir):
    """A target that already holds a load, so 'unchanged' means something."""
    assert etlctl("--config", str(config.path), "load", "customers", "products").returncode == 0
    return fingerprints(engine_for(workdir / "target.db"))


def _write(workdir: Path, body: str) -> str:
    path = workdir / "bad.toml"
    path.write_text(body, encoding="utf-8")
    return str(path)


def _urls(workdir: Path, source: str = "source.db", target: str = "target.db") -> str:
    return f'[source]\nurl = "sqlite:///{workdir / source}"\n[target]\nurl = "sqlite:///{workdir / target}"\n'


CASES = {
    "missing config": (lambda w: str(w / "nope.toml"), 2, "not found"),
    "not toml": (lambda w: _write(w, "[source\nurl="), 2, "not valid TOML"),
    "unknown key": (
        lambda w: _write(w, _urls(w) + "[tables]\nnames = ['customers']\nbogus = 1\n"),
        2,
        "bogus",
    ),
    "no cursor": (
        lambda w: _write(
            w, _urls(w) + "[tables]\nnames = ['customers']\n[table.customers]\nmode = 'incremental'\n"
        ),
        2,
        "no cursor column",
    ),
    "cursor not a column": (
        lambda w: _write(w, _urls(w) + "[table.customers]\nmode = 'incremental'\ncursor = 'changed_on'\n"),
        2,
        "no column 'changed_on'",
    ),
    "unknown table in config": (
        lambda w: _write(w, _urls(w) + "[tables]\nnames = ['custmers']\n"),
        2,
        "custmers",
    ),
    "bad mode": (
        lambda w: _write(
            w, _urls(w) + "[tables]\nnames = ['customers']\n[tables.defaults]\nmode = 'merge'\n"
        ),
        2,
        "mode",
    ),
    "unset secret": (
        lambda w: _write(
            w, _urls(w).replace("source.db", "${ETLCTL_TEST_UNSET}") + "[tables]\nnames=['x']\n"
        ),
        2,
        "ETLCTL_TEST_UNSET",
    ),
    "no driver": (
        lambda w: _write(
            w,
            _urls(w).replace(f"sqlite:///{w / 'source.db'}", "mysql://u:s3cret@127.0.0.1/x")
            + "[tables]\nnames=['x']\n",
        ),
        2,
        "no installed driver",
    ),
    "source file missing": (
        lambda w: _write(w, _urls(w, source="gone.db") + "[tables]\nnames=['x']\n"),
        3,
        "does not exist",
    ),
    "target unreachable": (
        lambda w: _write(w, _urls(w, target="no/such/dir/t.db") + "[tables]\nnames=['customers']\n"),
        3,
        "cannot connect to target",
    ),
}


@pytest.mark.parametrize("command", [["load"], ["config", "check"]])
@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_and_changes_nothing(case, command, workdir, loaded):
    make_path, code, fragment = CASES[case]
    proc = etlctl("--config", make_path(workdir), *command)
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("etlctl: error: "), proc.stderr
    assert fragment in lines[0]
    assert "s3cret" not in proc.stderr + proc.stdout
    assert fingerprints(engine_for(workdir / "target.db")) == loaded


def test_unknown_table_on_the_command_line(config, workdir, loaded):
    proc = etlctl("--config", str(config.path), "load", "customers", "no_such_table")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "etlctl: error: table 'no_such_table' is not among the configured tables"
    assert fingerprints(engine_for(workdir / "target.db")) == loaded


def test_a_failing_table_exits_1_names_it_and_the_others_load(config, workdir):
    with engine_for(workdir / "target.db").begin() as conn:
        conn.exec_driver_sql('CREATE TABLE products (id INTEGER, "must be set" TEXT NOT NULL)')
    proc = etlctl("--config", str(config.path), "load", "customers", "products", "categories")
    assert proc.returncode == 1
    assert proc.stdout.strip().splitlines()[-1] == "2 of 3 tables succeeded; failed: products"
    target, source = (
        fingerprints(engine_for(workdir / "target.db")),
        fingerprints(engine_for(workdir / "source.db")),
    )
    assert target["customers"] == source["customers"] and target["categories"] == source["categories"]
    assert target["products"] == (0, f"{0:032x}")
