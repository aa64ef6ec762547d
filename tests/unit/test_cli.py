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


def _register(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`etlctl machine register ... --dry-run` with a bare environment: no config, API or passwords."""
    return subprocess.run(
        [ETLCTL, "machine", "register", "--host", "db-07", "--target-dir", str(tmp_path / "units"), *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **(env or {})},
    )


def test_register_dry_run_needs_no_config_passwords_or_api(tmp_path):
    proc = _register(tmp_path, "--systemd", "--env-file", str(tmp_path / "missing.env"), "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "# config not read (config file" in proc.stdout
    assert f"# env file {tmp_path / 'missing.env'} does not exist yet" in proc.stdout
    assert "--env-file " + str(tmp_path / "missing.env") + " --pool etl-tables" in proc.stdout
    assert not (tmp_path / "units").exists()


def test_register_reads_the_env_file_first(tmp_path):
    """The config's location, its password and the pool come from the env file, as for the workers."""
    config = tmp_path / "etlctl.toml"
    config.write_text(
        '[source]\nurl = "postgresql://etl:${SOURCE_PW}@db/shop"\n[target]\nurl = "sqlite:///t.db"\n'
        '[tables]\nnames = ["a"]\n[prefect]\ntable_pool = "from-config"\n'
    )
    env_file = tmp_path / "etlctl.env"
    env_file.write_text(f"ETLCTL_CONFIG={config}\nSOURCE_PW='s3cret'\n")
    proc = _register(tmp_path, "--env-file", str(env_file), "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "config not read" not in proc.stdout and "s3cret" not in proc.stdout
    assert "# would record host db-07: 3 workers on pool from-config, supervisor" in proc.stdout
    assert f"--env-file {env_file} --pool from-config" in proc.stdout
    env_file.write_text(f"ETLCTL_CONFIG={config}\nSOURCE_PW=x\nPREFECT_WORK_POOL=seed-pool\n")
    proc = _register(tmp_path, "--env-file", str(env_file), "--dry-run")
    assert "# would record host db-07: 3 workers on pool seed-pool, supervisor" in proc.stdout
    # a real register needs the Prefect API: exit 4, one line, nothing written
    proc = _register(tmp_path, "--env-file", str(env_file), env={"PREFECT_API_URL": "http://127.0.0.1:9/api"})
    assert proc.returncode == 4 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "units").exists()


def test_registering_fewer_systemd_workers_stops_the_ones_above(tmp_path):
    units = tmp_path / "units"
    units.mkdir()
    (units / "etl-workers.target").write_text(
        "[Unit]\n" + "".join(f"Wants=etl-worker@{i}.service\n" for i in range(1, 5))
    )
    proc = _register(tmp_path, "--systemd", "--workers", "2", "--pool", "p", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-2:] == [
        "# would run: systemctl stop --no-block etl-worker@3.service etl-worker@4.service",
        "# would record host db-07: 2 workers on pool p, systemd",
    ]
    proc = _register(tmp_path, "--systemd", "--workers", "4", "--pool", "p", "--dry-run")
    assert "# would run: systemctl stop" not in proc.stdout


def test_register_server_installs_the_prefect_server_unit_first(tmp_path):
    proc = _register(tmp_path, "--systemd", "--server", "--pool", "p", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert f"# ---- {tmp_path / 'units' / 'prefect-server.service'}" in proc.stdout
    ran = [line for line in proc.stdout.splitlines() if line.startswith("# would run:")]
    assert ran == [
        "# would run: systemctl daemon-reload",
        "# would run: systemctl enable --now prefect-server.service",
        "# would run: systemctl enable --now etl-workers.target",
    ]
    proc = _register(tmp_path, "--supervisor", "--server", "--pool", "p", "--dry-run")
    assert proc.returncode == 2 and "needs --systemd" in proc.stderr


def _envvars(group: click.Group) -> dict[str, str]:
    """Every option's environment variable, as Click resolves it -> `command --option`."""
    found = {}

    def walk(command: click.Command, ctx: click.Context) -> None:
        for param in command.params:
            if isinstance(param, click.Option) and param.name not in ("help", "version"):
                name = param.envvar or f"{ctx.auto_envvar_prefix}_{param.name.upper()}"
                found[name] = f"{ctx.command_path} {param.opts[-1]}"
        if isinstance(command, click.Group):
            for sub in command.list_commands(ctx):
                child = command.get_command(ctx, sub)
                walk(child, click.Context(child, info_name=sub, parent=ctx))

    walk(group, click.Context(group, info_name="etlctl", auto_envvar_prefix="ETLCTL"))
    return found


# Read by etlctl's processes themselves (not options), by supervisord's config, or by the benchmarks.
NOT_OPTIONS = {
    "ETLCTL_POOL",
    "ETLCTL_DRAIN_SECONDS",
    "ETLCTL_LOG_MAX_BYTES",
    "ETLCTL_LOG_BACKUPS",
    "ETLCTL_WORKER_NAME",
    "ETLCTL_WORKERS",
    "ETLCTL_HOME",
    "ETLCTL_BIN",
    "ETLCTL_ENV_FILE",
    "ETLCTL_BENCH_CACHE",  # read by bench.tpcds_data, where the TPC-DS benchmark keeps its data
}
DOCS = Path(__file__).resolve().parents[2]


def test_every_documented_etlctl_variable_is_an_option_or_read_by_etlctl():
    """A variable named in the docs or the help that Click would not read fails here."""
    import re

    options = _envvars(main)
    assert options["ETLCTL_WORKERS_START_COUNT"] == "etlctl workers start --count"
    assert options["ETLCTL_CONFIG"] == "etlctl --config"
    texts = [main.help or "", sys.modules["cli"].__doc__ or ""]
    texts += [
        path.read_text()
        for path in [DOCS / "README.md", *(DOCS / "docs").glob("*.md"), *(DOCS / "ops").rglob("*")]
        if path.is_file()
    ]
    named = {m for text in texts for m in re.findall(r"\bETLCTL_[A-Z_]*[A-Z]\b", text)}
    unknown = sorted(named - set(options) - NOT_OPTIONS)
    assert not unknown, f"documented but read by nothing: {unknown}"


def test_options_read_their_variables_from_the_environment(tmp_path):
    def etlctl(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [ETLCTL, *args],
            capture_output=True,
            text=True,
            check=False,
            cwd=tmp_path,
            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **env},
        )

    proc = etlctl("status", ETLCTL_STATUS_BATCHES="0")
    assert proc.returncode == 2 and "--batches" in proc.stderr, proc.stderr
    proc = etlctl(
        "machine",
        "register",
        "--env-file",
        str(tmp_path / "none.env"),
        "--target-dir",
        str(tmp_path / "u"),
        ETLCTL_MACHINE_REGISTER_WORKERS="5",
        ETLCTL_MACHINE_REGISTER_DRY_RUN="1",
        ETLCTL_MACHINE_REGISTER_POOL="q",
    )
    assert proc.returncode == 0, proc.stderr
    assert "workers on pool q" in proc.stdout and "numprocs = 5" in proc.stdout
    assert not (tmp_path / "u").exists()
