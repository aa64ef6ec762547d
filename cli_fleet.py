"""etlctl's fleet commands, `etlctl workers ...` and `etlctl machine ...`: worker processes on this
host and the hosts of the fleet. Loaded by `cli.main` only when one of them is asked for; they parse
their options and delegate to `flows.fleet`, like every other command.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from cli import ENV_FILE_OPTION, Settings, pass_settings, with_prefect
from flows.config import DEFAULT_WORKERS
from flows.fleet.render import DEFAULT_ENV_FILE, DEFAULT_HOME, DEFAULT_USER

SERVER_START_SECONDS = 120  # a new Prefect server takes 5-30 s to answer; more on a busy host


@click.group("workers")
def workers_group() -> None:
    """Prefect workers on this machine."""


@workers_group.command("exec")
@click.option("--name", help="Worker name [default: <short host name>-<index>].")
@click.option(
    "--index",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Slot number for the default name (supervisord's process_num, systemd's %i).",
)
@click.option(
    "--pool",
    help="Work pool [default: $ETLCTL_POOL, then $PREFECT_WORK_POOL, from the environment or the "
    "env file, else etl-tables].",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Flow runs this worker takes at once; the per-table fan-out assumes 1.",
)
@click.option(
    "--env-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="KEY=VALUE file with PREFECT_API_URL, PREFECT_API_KEY, ETLCTL_CONFIG, ...",
)
def worker_exec(name: str | None, index: int, pool: str | None, limit: int, env_file: Path | None) -> None:
    """One worker slot, as supervisord and systemd run it: load the env file, then become
    `prefect worker start --type etlctl`, which drains on SIGTERM."""
    from flows.fleet.naming import this_host, worker_name
    from flows.fleet.worker_exec import exec_worker

    exec_worker(name or worker_name(this_host(), index), pool, limit, env_file)


@workers_group.command("start")
@click.option(
    "-n", "--count", type=click.IntRange(min=1), help="How many workers [default: [prefect] workers]."
)
@click.option(
    "--pool", help="Work pool [default: $ETLCTL_POOL, $PREFECT_WORK_POOL, [prefect] table_pool, etl-tables]."
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Flow runs per worker at once; the per-table fan-out assumes 1.",
)
@click.option("--prefix", help="Worker names are PREFIX-01, PREFIX-02, ... [default: short host name].")
@ENV_FILE_OPTION
@with_prefect
def workers_start(
    settings: Settings, count: int | None, pool: str | None, limit: int, prefix: str | None
) -> None:
    """Run N `prefect worker start --type etlctl` processes in the foreground, restarting any that dies.

    The first Ctrl+C (or SIGTERM) drains: running tables finish, no new ones are claimed, then
    every worker exits. A second Ctrl+C stops at once, with the running tables (they end Crashed
    and a waiting `etlctl run` submits them again): no process is left behind either way.
    """
    config = settings.export_config()
    from flows.fleet.workers import WorkerSupervisor

    supervisor = WorkerSupervisor(
        pool or config.prefect.table_pool,
        count or config.prefect.workers,
        limit=limit,
        prefix=prefix,
        log_dir=settings.state / "logs",
        report=click.echo,
    )
    click.echo(
        f"starting {len(supervisor.workers())} workers on pool {supervisor.pool}; logs in "
        f"{settings.state / 'logs'}; Ctrl+C lets running tables finish, twice stops at once"
    )
    supervisor.run_forever()


@click.group("machine")
def machine_group() -> None:
    """Hosts of the fleet: register, list, drain, restart, deregister (inventory kept in Prefect)."""


@machine_group.command("register")
@click.option("--host", help="Name of this host in the fleet [default: short host name].")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=DEFAULT_WORKERS,
    show_default=True,
    help="Worker processes on this host; fewer than before stops the ones above (they drain first).",
)
@click.option(
    "--pool",
    help="Work pool, written into the workers' command line [default: $ETLCTL_POOL, "
    "$PREFECT_WORK_POOL, [prefect] table_pool, etl-tables].",
)
@click.option(
    "--supervisor",
    "manager",
    flag_value="supervisor",
    default=True,
    help="Run the workers under supervisord (default).",
)
@click.option("--systemd", "manager", flag_value="systemd", help="Run the workers as systemd units.")
@click.option(
    "--server",
    is_flag=True,
    help="This host also runs the Prefect server: install and start prefect-server.service "
    "(with --systemd) before the workers.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print the files and commands; record and change nothing (needs no config, passwords or API).",
)
@click.option(
    "--target-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write the files here instead of /etc/supervisor/conf.d or /etc/systemd/system.",
)
@click.option("--no-start", is_flag=True, help="Write the files but do not start the workers.")
@click.option(
    "--env-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_ENV_FILE,
    show_default=True,
    help="The env file the workers load; read here first when it exists (PREFECT_API_URL, "
    "PREFECT_API_KEY, ETLCTL_CONFIG, ETLCTL_POOL, passwords).",
)
@click.option(
    "--user",
    default=DEFAULT_USER,
    show_default=True,
    help="Unix user the workers run as; '-' keeps the service manager's own.",
)
@click.option("--home", default=DEFAULT_HOME, show_default=True, help="Logs and state on this host.")
@click.option(
    "--supervisor-config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="supervisord.conf for supervisorctl, when not the system one.",
)
@pass_settings
def machine_register(
    settings: Settings,
    host: str | None,
    workers: int,
    pool: str | None,
    manager: str,
    server: bool,
    dry_run: bool,
    target_dir: Path | None,
    no_start: bool,
    env_file: Path,
    user: str,
    home: str,
    supervisor_config: Path | None,
) -> None:
    """Record this host in the inventory, install its worker services and start them.

    The env file is read first, as the workers will read it, so the Prefect API, the config and
    its passwords come from there. --dry-run only renders: it needs none of them.
    """
    from flows.config import DEFAULT_POOL, pool_from_env
    from flows.errors import ConfigError
    from flows.fleet.envfile import read_env_file
    from flows.fleet.install import describe, install, plan_host
    from flows.fleet.naming import this_host, variable_name

    name = host or this_host()
    variable_name(name)
    found = env_file.is_file()
    if found:
        os.environ.update(read_env_file(env_file))
    limits = None
    try:
        pool, limits = pool or settings.config.prefect.table_pool, settings.config.workers
    except ConfigError as exc:
        if not dry_run and not pool:
            raise
        pool = pool or pool_from_env() or DEFAULT_POOL
        click.echo(f"# config not read ({exc}); pool {pool}, no [workers] limits in the units")
    plan = plan_host(
        name,
        manager,
        workers,
        str(Path(sys.executable).with_name("etlctl")),
        str(env_file),
        None if user == "-" else user,
        home,
        target_dir,
        supervisor_config,
        pool=pool,
        server=server,
        limits=limits,
    )
    if not found:
        click.echo(f"# env file {env_file} does not exist yet: the workers need it (ops/etlctl.env.example)")
    if dry_run:
        click.echo(describe(plan, name, workers, pool))
        return
    # With --server, the API this host records itself in is the one it is about to start.
    early = install(plan, start=not no_start) if server else []
    for line in early:
        click.echo(line)
    from flows.fleet.environment import wait_connected

    wait_connected(settings.state, SERVER_START_SECONDS if server and not no_start else 0)
    from flows.fleet.machines import Machine, record

    record(Machine.now(name, workers, pool, manager))
    click.echo(f"recorded host {name}: {workers} workers on pool {pool} ({manager})")
    for line in [] if server else install(plan, start=not no_start):
        click.echo(line)


@machine_group.command("ls")
@click.option("--json", "as_json", is_flag=True, help="One JSON document, for scripts.")
@with_prefect
def machine_ls(settings: Settings, as_json: bool) -> None:
    """Every registered host: expected and live workers, last heartbeat, runs, health verdict."""
    from flows.report import print_machines

    print_machines(as_json)


@machine_group.command("drain")
@click.argument("host")
@click.option(
    "--wait/--no-wait",
    default=True,
    show_default=True,
    help="Return only once the host's runs in progress have finished.",
)
@click.option(
    "--timeout",
    type=float,
    default=3600,
    show_default=True,
    help="Seconds to wait for the host's runs in progress to finish.",
)
@with_prefect
def machine_drain(settings: Settings, host: str, wait: bool, timeout: float) -> None:
    """HOST's workers finish their current tables and claim no new ones (until `resume`)."""
    from flows.fleet.machines import set_draining, wait_idle

    set_draining(host, True)
    click.echo(f"{host}: draining; its workers claim no new flow runs")
    if wait and not wait_idle(host, timeout):
        raise click.ClickException(f"{host} still has runs in progress after {timeout:.0f} s")
    if wait:
        click.echo(f"{host}: idle")


@machine_group.command("resume")
@click.argument("host")
@with_prefect
def machine_resume(settings: Settings, host: str) -> None:
    """Let a drained HOST's workers claim flow runs again."""
    from flows.fleet.machines import set_draining

    set_draining(host, False)
    click.echo(f"{host}: claiming flow runs again")


@machine_group.command("deregister")
@click.argument("host")
@click.option(
    "--timeout",
    type=float,
    default=3600,
    show_default=True,
    help="Seconds to wait for the host's runs in progress to finish.",
)
@with_prefect
def machine_deregister(settings: Settings, host: str, timeout: float) -> None:
    """Drain HOST, wait for its runs to finish, and remove it from the inventory."""
    from flows.fleet.machines import forget, set_draining, wait_idle

    set_draining(host, True)
    if not wait_idle(host, timeout):
        raise click.ClickException(f"{host} still has runs in progress after {timeout:.0f} s; still drained")
    forget(host)
    click.echo(
        f"{host}: drained and removed from the inventory; stop its services there "
        "(supervisorctl stop etl-worker:* or systemctl disable --now etl-workers.target)"
    )


@machine_group.command("restart")
@click.option(
    "--supervisor-config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="supervisord.conf for supervisorctl, when not the system one.",
)
@with_prefect
def machine_restart(settings: Settings, supervisor_config: Path | None) -> None:
    """Rolling restart of this host's workers (run it on the host): one at a time, each only when idle."""
    from flows.fleet.install import rolling_restart
    from flows.fleet.machines import lookup
    from flows.fleet.naming import this_host

    machine = lookup(this_host())
    rolling_restart(machine.manager, machine.host, machine.workers, click.echo, supervisor_config)
