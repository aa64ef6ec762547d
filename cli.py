"""etlctl: the command line. Each command parses its options and delegates to `flows`.

Every option can also be given as an environment variable, by Click's rule: ETLCTL_, the command
path, then the option's name, upper-cased with '_' for '-' and ' ' (ETLCTL_WORKERS_START_COUNT=4
for `workers start --count`, ETLCTL_STATUS_BATCHES=10). The global options and a few others keep
a short name of their own: ETLCTL_CONFIG, ETLCTL_STATE_DIR, ETLCTL_PING_URL,
ETLCTL_SERVER_DATABASE_URL. `--help` shows each option's variable. Errors are one line on stderr
and an exit code from docs/exit-codes.md.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import click

from flows.config import CONFIG_ENV, DEFAULT_WORKERS, Config, load_config
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
        return self._config

    def export_config(self) -> Config:
        """Point the flows this process runs or starts at the same file: they read $ETLCTL_CONFIG."""
        os.environ[CONFIG_ENV] = str(self.config.path)
        return self.config

    @property
    def state(self) -> Path:
        from flows.fleet.environment import state_dir

        return state_dir(self.state_dir)

    def connect(self) -> str:
        """Settle the Prefect API before anything imports prefect; returns its URL."""
        from flows.fleet.environment import connect

        return connect(self.state)


pass_settings = click.make_pass_decorator(Settings)
Command = TypeVar("Command", bound=Callable[..., Any])


def with_prefect(command: Command) -> Command:
    """For the commands that talk to Prefect, in the manner of Flask's `with_appcontext`: the API
    is settled (exit 4 if there is none) before the command imports prefect, which reads its
    settings once, on import. The command receives the Settings."""

    @pass_settings
    @functools.wraps(command)
    def wrapper(settings: Settings, *args: Any, **kwargs: Any) -> Any:
        settings.connect()
        return command(settings, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def load_env_file(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """--env-file, read before every other option and before Prefect is reached (cron's bare env)."""
    if value is not None:
        from flows.fleet.envfile import read_env_file

        os.environ.update(read_env_file(value))
    return value


ENV_FILE_OPTION = click.option(
    "--env-file",
    type=click.Path(dir_okay=False, path_type=Path),
    is_eager=True,
    expose_value=False,
    callback=load_env_file,
    help="KEY=VALUE file to load first (PREFECT_API_AUTH_STRING, passwords, ...).",
)


class EtlGroup(click.Group):
    """Turns the library's errors into one line and the exit code the error carries, and loads the
    fleet's command groups (cli_fleet) only when one of them is asked for."""

    LAZY: ClassVar[dict[str, str]] = {"workers": "workers_group", "machine": "machine_group"}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.LAZY])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.LAZY:
            import cli_fleet

            return show_envvars(getattr(cli_fleet, self.LAZY[cmd_name]))
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EtlError as exc:
            click.echo(f"etlctl: error: {exc}", err=True)
            sys.exit(exc.exit_code)


def show_envvars(command: click.Command) -> click.Command:
    """Let `--help` name the environment variable of every option of `command` and its subcommands."""
    for param in command.params:
        if isinstance(param, click.Option) and param.name not in ("help", "version"):
            param.show_envvar = True
    for sub in getattr(command, "commands", {}).values():
        show_envvars(sub)
    return command


@click.group(cls=EtlGroup, context_settings={"auto_envvar_prefix": "ETLCTL"})
@click.option(
    "--config",
    "config_path",
    envvar=CONFIG_ENV,
    type=click.Path(dir_okay=False),
    help="Configuration file [default ./etlctl.toml].",
)
@click.option(
    "--state-dir",
    envvar="ETLCTL_STATE_DIR",
    type=click.Path(file_okay=False),
    help="Local Prefect server and logs [default ~/.local/state/etlctl].",
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
    help="Server database, e.g. postgresql+asyncpg://... [the environment variable is preferred: "
    "a password on a command line shows in ps; default SQLite].",
)
@click.option("--foreground", is_flag=True, help="Stay attached; Ctrl+C stops the server.")
@ENV_FILE_OPTION
@pass_settings
def server_start(
    settings: Settings, host: str, port: int, ui: bool, database_url: str | None, foreground: bool
) -> None:
    """Start the server in the background and record where it is, for the other commands.

    Basic auth: set PREFECT_API_AUTH_STRING=user:secret (or PREFECT_SERVER_API_AUTH_STRING) in the
    environment or the env file; every client then needs PREFECT_API_AUTH_STRING.
    """
    from flows.fleet.auth import exposure_warning, server_auth
    from flows.fleet.environment import server_home
    from flows.fleet.server import start_server

    auth = server_auth(os.environ)
    warning = exposure_warning(host, auth)
    if warning:
        click.echo(f"etlctl: warning: {warning}", err=True)
    handle = start_server(server_home(settings.state), port or None, host, database_url, ui=ui, auth=auth)
    click.echo(
        f"Prefect server running: {handle.api_url} (pid {handle.pid}" + (", basic auth on)" if auth else ")")
    )
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
@with_prefect
def setup(settings: Settings) -> None:
    """Create the work pools and the `database` concurrency limit ($PREFECT_CONCURRENCY_LIMIT)."""
    from flows.deploy import setup as do_setup

    for line in do_setup(settings.config):
        click.echo(line)


@main.command("deploy")
@with_prefect
def deploy(settings: Settings) -> None:
    """Create or update the four deployments (module entrypoints; no storage, no pull step)."""
    from flows.deploy import deploy as do_deploy

    for line in do_deploy(settings.config):
        click.echo(line)


@main.command("run")
@click.argument("tables", nargs=-1)
@click.option(
    "--single-flow",
    is_flag=True,
    help="Run every table as a task of one flow run in this process (no workers needed), "
    "at most `database`-limit tables at once.",
)
@ENV_FILE_OPTION
@click.option(
    "--ping-url",
    envvar="ETLCTL_PING_URL",
    help="Dead-man's switch: GET <url>/start when the batch starts, <url>/<exit code> whenever "
    "the command ends (0, 1, 2, 3, 4, 69, 75, 130 or 143).",
)
@click.option(
    "--start-timeout",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds to wait on a work pool with no worker online before giving up with exit 69 "
    "[default: [prefect] start_timeout, 300].",
)
@pass_settings
def run(
    settings: Settings,
    tables: tuple[str, ...],
    single_flow: bool,
    ping_url: str | None,
    start_timeout: float | None,
) -> None:
    """Run the orchestrator here: one flow run per table on the workers, then the cleanups.

    Only one orchestrator runs at a time in the whole fleet. Exits 0 when every table loaded,
    1 when any failed, 69 when no worker came online, 75 when skipped because another run is
    active (docs/exit-codes.md).
    """
    from flows.ping import ping, pinged_exit

    with pinged_exit(ping_url):
        settings.connect()
        config = settings.export_config()
        from flows.etl.plan import checked_plans

        checked_plans(config, list(tables))  # bad input: one line and exit 2 or 3, before any flow run
        from flows.lock import orchestrator_lock
        from flows.report import print_results
        from flows.run import run_batch

        with orchestrator_lock():
            ping(ping_url, "start")
            if single_flow:
                from flows.single_flow import etl_all_tables

                final = etl_all_tables(tables=list(tables) or None, return_state=True)
                ok, message = final.is_completed(), final.message
            else:
                report = run_batch(config, list(tables), start_timeout)
                print_results(report.results)
                ok, message = report.ok, f"batch {report.batch_id}: {report.message}"
            click.echo(message)
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
    "--workers",
    type=click.IntRange(min=1),
    default=DEFAULT_WORKERS,
    show_default=True,
    help="Worker processes to start.",
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
    from flows.demo.run import run_demo

    sys.exit(0 if run_demo(settings.state / "demo", workers, big_rows, keep) else 1)


show_envvars(main)
