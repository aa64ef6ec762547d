"""The command line itself: every command documented, and `machine register --dry-run` rendering
this host's files without touching anything."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest

from cli import main

ETLCTL = str(Path(sys.executable).with_name("etlctl"))


def _commands(group: click.Group, prefix: tuple[str, ...] = ()):
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        yield (*prefix, name), command
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))


@pytest.mark.parametrize(
    ("path", "command"), list(_commands(main)), ids=lambda v: " ".join(v) if isinstance(v, tuple) else ""
)
def test_every_command_and_option_has_help(path, command):
    assert command.help and command.help.strip(), path
    for param in command.params:
        if isinstance(param, click.Option) and param.name not in ("help",):
            assert param.help, f"{' '.join(path)} {param.opts}"


@pytest.mark.parametrize(
    ("manager", "expect"), [("--supervisor", "numprocs = 4"), ("--systemd", "Wants=etl-worker@4.service")]
)
def test_register_dry_run_renders_this_host_and_changes_nothing(tmp_path, manager, expect):
    config = tmp_path / "etlctl.toml"
    config.write_text(
        '[source]\nurl = "sqlite:///s.db"\n[target]\nurl = "sqlite:///t.db"\n[tables]\nnames = ["a"]\n'
    )
    proc = subprocess.run(
        [
            ETLCTL,
            "--config",
            str(config),
            "machine",
            "register",
            "--host",
            "db-07",
            "--workers",
            "4",
            manager,
            "--target-dir",
            str(tmp_path / "out"),
            "--dry-run",
        ],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr
    assert expect in proc.stdout
    assert "# would record host db-07: 4 workers on pool etl-tables" in proc.stdout
    if manager == "--supervisor":
        assert "process_name = db-07-%(process_num)02d" in proc.stdout
    else:
        assert "etl-worker@.service" in proc.stdout
    assert not (tmp_path / "out").exists()
