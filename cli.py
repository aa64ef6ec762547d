"""etlctl: the command line. Each command parses its options and delegates to `flows`.

Every option can also be given as an environment variable ETLCTL_<OPTION> (for example
ETLCTL_CONFIG=/etc/etlctl/etlctl.toml). Errors are one line on stderr and an exit code from
docs/exit-codes.md.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from flows.config import Config, load_config
from flows.errors import EtlError


class Settings:
    """What every command shares, loaded on first use so `--help` never touches the config."""

    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config


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
@click.version_option(package_name="etlctl")
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """Move tables from a source database to a target database, one Prefect flow run per table."""
    ctx.obj = Settings(config_path)


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
