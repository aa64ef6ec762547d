"""etlctl: the command line. Each command parses its options and delegates to `flows`.

Every option can also be given as an environment variable ETLCTL_<OPTION> (for example
ETLCTL_CONFIG=/etc/etlctl/etlctl.toml). Errors are one line on stderr and an exit code from
docs/exit-codes.md.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from flows.config import CONFIG_ENV, Config, load_config
from flows.errors import EtlError


class Settings:
    """What every command shares, loaded on first use so `--help` never touches the config."""

    def __init__(self, config_path: str | None, state_dir: str | None) -> None:
        self.config_path = config_path
        self.state_dir = state_dir
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_path)
            os.environ[CONFIG_ENV] = str(self._config.path)  # flows and workers read the same file
        return self._config

    @property
    def state(self) -> Path:
        from flows.fleet.environment import state_dir

        return state_dir(self.state_dir)

    def connect(self) -> str:
        """Settle the Prefect API before anything imports prefect; returns its URL."""
        from flows.fleet.environment import connect

        return connect(self.state)


pass_settings = click.make_pass_decorator(Settings)


class EtlGroup(click.Group):
    """Turns the library's errors into one line and the exit code the error carries."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EtlError as exc:
            click.echo(f"etlctl: error: {exc}", err=True)
            sys.exit(exc.exit_code)


@click.group(cls=EtlGroup, context_settings={"auto_envvar_prefix": "ETLCTL"})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="Configuration file [env ETLCTL_CONFIG; default ./etlctl.toml].",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False),
    help="Local Prefect server and logs [env ETLCTL_STATE_DIR; default ~/.local/state/etlctl].",
)
@click.version_option(package_name="etlctl")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, state_dir: str | None) -> None:
    """Move tables from a source database to a target database, one Prefect flow run per table.

    \b
    One machine, from scratch:
      etlctl server start && etlctl setup && etlctl deploy
      etlctl workers start -n 3 &     # or supervisord / systemd, see docs/operations.md
      etlctl run
    """
    ctx.obj = Settings(config_path, state_dir)


@main.group("config")
def config_group() -> None:
    """Inspect and validate the configuration."""


@config_group.command("check")
@pass_settings
def config_check(settings: Settings) -> None:
    """Validate the file and both connections, then print the plan: tables, modes, row estimates."""
    from flows.report import print_plan

    print_plan(settings.config)


@main.command("load")
@click.argument("tables", nargs=-1)
@click.option("--batch-id", help="Label recorded with each table's state (default: a timestamp).")
@pass_settings
def load(settings: Settings, tables: tuple[str, ...], batch_id: str | None) -> None:
    """Move TABLES (default: every selected table) here and now, without Prefect.

    For debugging a table and for hosts without a Prefect server; exits 1 if any table failed.
    """
    from flows.etl.batch import run_tables
    from flows.report import print_results

    results = run_tables(settings.config, list(tables), batch_id)
    print_results(results)
    sys.exit(1 if any(r.outcome != "success" for r in results) else 0)


@main.group("server")
def server_group() -> None:
    """A local Prefect server (SQLite in the state directory) for one machine."""


@server_group.command("start")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=4200, show_default=True, help="Port; 0 picks a free one.")
@click.option("--ui/--no-ui", default=True, show_default=True, help="Serve the Prefect UI too.")
@click.option(
    "--database-url",
    envvar="ETLCTL_SERVER_DATABASE_URL",
    help="Server database, e.g. postgresql+asyncpg://... [env ETLCTL_SERVER_DATABASE_URL, preferred: "
    "a password on a command line shows in ps; default SQLite].",
)
@click.option("--foreground", is_flag=True, help="Stay attached; Ctrl+C stops the server.")
@pass_settings
def server_start(
    settings: Settings, host: str, port: int, ui: bool, database_url: str | None, foreground: bool
) -> None:
    """Start the server in the background and record where it is, for the other commands."""
    from flows.fleet.environment import server_home
    from flows.fleet.server import start_server

    handle = start_server(server_home(settings.state), port or None, host, database_url, ui=ui)
    click.echo(f"Prefect server running: {handle.api_url} (pid {handle.pid})")
    if ui:
        click.echo(f"Prefect UI: {handle.api_url.removesuffix('/api')}")
    if foreground:
        from flows.fleet.server import wait_for_exit

        wait_for_exit(handle)


@server_group.command("stop")
@pass_settings
def server_stop(settings: Settings) -> None:
    """Stop the server started by `etlctl server start` (from any shell)."""
    from flows.fleet.environment import server_home
    from flows.fleet.server import stop_server

    click.echo("server stopped" if stop_server(server_home(settings.state)) else "no server was running")


@main.command("setup")
@pass_settings
def setup(settings: Settings) -> None:
    """Create the work pools and the `database` concurrency limit ($PREFECT_CONCURRENCY_LIMIT)."""
    settings.connect()
    from flows.fleet.prefect_setup import setup as do_setup

    for line in do_setup(settings.config):
        click.echo(line)


@main.command("deploy")
@pass_settings
def deploy(settings: Settings) -> None:
    """Create or update the four deployments (module entrypoints; no storage, no pull step)."""
    settings.connect()
    from flows.fleet.prefect_setup import deploy as do_deploy

    for line in do_deploy(settings.config):
        click.echo(line)


@main.group("workers")
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
    help="Work pool [default: ETLCTL_POOL from the environment or the env file, else etl-tables].",
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
@click.option("--pool", help="Work pool [default: [prefect] table_pool].")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Flow runs per worker at once; the per-table fan-out assumes 1.",
)
@click.option("--prefix", help="Worker names are PREFIX-01, PREFIX-02, ... [default: short host name].")
@pass_settings
def workers_start(
    settings: Settings, count: int | None, pool: str | None, limit: int, prefix: str | None
) -> None:
    """Run N `prefect worker start` processes in the foreground, restarting any that dies.

    Ctrl+C (or SIGTERM) stops them all, with their flow runs: no process is left behind.
    """
    api = settings.connect()
    config = settings.config
    from flows.fleet.workers import WorkerSupervisor

    supervisor = WorkerSupervisor(
        pool or config.prefect.table_pool,
        count or config.prefect.workers,
        limit=limit,
        prefix=prefix,
        extra_env={"PREFECT_API_URL": api, CONFIG_ENV: str(config.path)},
        log_dir=settings.state / "logs",
    )
    click.echo(
        f"starting {len(supervisor.workers())} workers on pool {supervisor.pool}; logs in "
        f"{settings.state / 'logs'}; Ctrl+C stops them"
    )
    supervisor.run_forever()


@main.command("run")
@click.argument("tables", nargs=-1)
@click.option(
    "--single-flow",
    is_flag=True,
    help="Run every table as a task of one flow run in this process (no workers needed), "
    "at most `database`-limit tables at once.",
)
@click.option(
    "--env-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="KEY=VALUE file to load first (cron runs with a bare environment).",
)
@click.option(
    "--ping-url",
    envvar="ETLCTL_PING_URL",
    help="Dead-man's switch: GET <url>/start before, <url>/<exit code> after [env ETLCTL_PING_URL].",
)
@pass_settings
def run(
    settings: Settings,
    tables: tuple[str, ...],
    single_flow: bool,
    env_file: Path | None,
    ping_url: str | None,
) -> None:
    """Run the orchestrator here: one flow run per table on the workers, then the cleanups.

    Only one orchestrator runs at a time in the whole fleet. Exits 0 when every table loaded,
    1 when any failed, 75 when skipped because another run is active.
    """
    if env_file is not None:
        from flows.fleet.worker_exec import read_env_file

        os.environ.update(read_env_file(env_file))
        ping_url = ping_url or os.environ.get("ETLCTL_PING_URL")
    settings.connect()
    config = settings.config
    from flows.etl.plan import checked_plans

    checked_plans(config, list(tables))  # bad input: one line and exit 2 or 3, before any flow run
    from flows.fleet.orchestrator_lock import orchestrator_lock
    from flows.report import print_results
    from flows.run import ping, run_batch

    with orchestrator_lock():
        ping(ping_url, "start")
        if single_flow:
            from flows.prefect_flow import etl_all_tables

            final = etl_all_tables(tables=list(tables) or None, return_state=True)
            ok, message = final.is_completed(), final.message
        else:
            report = run_batch(config, list(tables))
            print_results(report.results)
            ok, message = report.ok, f"batch {report.batch_id}: {report.message}"
        click.echo(message)
        ping(ping_url, "0" if ok else "1")
    sys.exit(0 if ok else 1)


@main.command("status")
@click.option(
    "--batches",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="How many recent batches to list.",
)
@pass_settings
def status(settings: Settings, batches: int) -> None:
    """Recent batches, and each table's outcome in the latest one (from the target's history)."""
    from flows.report import print_status

    print_status(settings.config, batches)


@main.command("demo")
@click.option(
    "--workers", type=click.IntRange(min=1), default=3, show_default=True, help="Worker processes to start."
)
@click.option(
    "--big-rows",
    type=click.IntRange(min=0),
    default=200_000,
    show_default=True,
    help="Rows in the sample's largest table.",
)
@click.option("--keep", is_flag=True, help="Leave the Prefect server running afterwards, for the UI.")
@pass_settings
def demo(settings: Settings, workers: int, big_rows: int, keep: bool) -> None:
    """Everything on this machine from scratch: sample source, server, workers, a full run.

    Uses <state-dir>/demo and ignores --config. Exits 0 when every table arrived intact.
    """
    from flows.demo import run_demo

    sys.exit(0 if run_demo(settings.state / "demo", workers, big_rows, keep) else 1)


@main.group("machine")
def machine_group() -> None:
    """Hosts of the fleet: register, list, drain, restart, deregister (inventory kept in Prefect)."""


@machine_group.command("register")
@click.option("--host", help="Name of this host in the fleet [default: short host name].")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Worker processes on this host.",
)
@click.option("--pool", help="Work pool [default: [prefect] table_pool].")
@click.option(
    "--supervisor",
    "manager",
    flag_value="supervisor",
    default=True,
    help="Run the workers under supervisord (default).",
)
@click.option("--systemd", "manager", flag_value="systemd", help="Run the workers as systemd units.")
@click.option("--dry-run", is_flag=True, help="Print the files and commands; record and change nothing.")
@click.option(
    "--target-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write the files here instead of /etc/supervisor/conf.d or /etc/systemd/system.",
)
@click.option("--no-start", is_flag=True, help="Write the files but do not start the workers.")
@click.option(
    "--env-file",
    default="/etc/etlctl/etlctl.env",
    show_default=True,
    help="The env file the workers load (PREFECT_API_URL, ETLCTL_CONFIG, secrets).",
)
@click.option(
    "--user",
    default="etl",
    show_default=True,
    help="Unix user the workers run as; '-' keeps the service manager's own user.",
)
@click.option("--home", default="/var/lib/etlctl", show_default=True, help="Logs and state on this host.")
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
    dry_run: bool,
    target_dir: Path | None,
    no_start: bool,
    env_file: str,
    user: str,
    home: str,
    supervisor_config: Path | None,
) -> None:
    """Record this host in the inventory, install its worker services and start them."""
    from flows.fleet.install import describe, install, plan_host
    from flows.fleet.naming import this_host, variable_name

    name = host or this_host()
    variable_name(name)
    plan = plan_host(
        name,
        manager,
        workers,
        str(Path(sys.executable).with_name("etlctl")),
        env_file,
        None if user == "-" else user,
        home,
        target_dir,
        supervisor_config,
    )
    pool = pool or settings.config.prefect.table_pool
    if dry_run:
        click.echo(describe(plan, name, workers, pool))
        return
    settings.connect()
    from flows.fleet.machines import Machine, record

    record(Machine.now(name, workers, pool, manager))
    click.echo(f"recorded host {name}: {workers} workers on pool {pool} ({manager})")
    for line in install(plan, start=not no_start):
        click.echo(line)


@machine_group.command("ls")
@click.option("--json", "as_json", is_flag=True, help="One JSON document, for scripts.")
@pass_settings
def machine_ls(settings: Settings, as_json: bool) -> None:
    """Every registered host: expected and live workers, last heartbeat, runs, health verdict."""
    settings.connect()
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
@pass_settings
def machine_drain(settings: Settings, host: str, wait: bool, timeout: float) -> None:
    """HOST's workers finish their current tables and claim no new ones (until `resume`)."""
    settings.connect()
    from flows.fleet.machines import set_draining, wait_idle

    set_draining(host, True)
    click.echo(f"{host}: draining; its workers claim no new flow runs")
    if wait and not wait_idle(host, timeout):
        raise click.ClickException(f"{host} still has runs in progress after {timeout:.0f} s")
    if wait:
        click.echo(f"{host}: idle")


@machine_group.command("resume")
@click.argument("host")
@pass_settings
def machine_resume(settings: Settings, host: str) -> None:
    """Let a drained HOST's workers claim flow runs again."""
    settings.connect()
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
@pass_settings
def machine_deregister(settings: Settings, host: str, timeout: float) -> None:
    """Drain HOST, wait for its runs to finish, and remove it from the inventory."""
    settings.connect()
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
@click.argument("host", required=False)
@click.option(
    "--supervisor-config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="supervisord.conf for supervisorctl, when not the system one.",
)
@pass_settings
def machine_restart(settings: Settings, host: str | None, supervisor_config: Path | None) -> None:
    """Rolling restart of this host's workers: one at a time, each only when idle."""
    settings.connect()
    from flows.fleet.install import rolling_restart
    from flows.fleet.machines import lookup
    from flows.fleet.naming import this_host

    name = host or this_host()
    if name != this_host():
        raise click.ClickException(f"run `etlctl machine restart` on {name} itself")
    machine = lookup(name)
    rolling_restart(machine.manager, name, machine.workers, click.echo, supervisor_config)
