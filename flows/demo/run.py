"""`etlctl demo`: the whole product on one machine, from nothing, in one command.

Builds the sample source database, starts a Prefect server (SQLite), creates the pools and the four
deployments, starts the workers, runs the orchestrator, proves every target table equals its
source, and stops what it started (the server stays up with --keep, for a look at the UI).

Prefect reads its settings when first imported, so this module imports it only after pointing
PREFECT_API_URL at the server it started.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import click

from flows.config import CONFIG_ENV, load_config
from flows.demo.sample import build_sample, write_sample_config
from flows.etl.engines import make_engine
from flows.etl.fingerprint import fingerprint
from flows.fleet.auth import CLIENT_AUTH_ENV, server_auth
from flows.fleet.naming import API_ENV
from flows.fleet.private import private_dir
from flows.fleet.server import ServerHandle, start_server
from flows.fleet.workers import WorkerSupervisor


def run_demo(home: Path, workers: int, big_rows: int, keep: bool) -> bool:
    """True when every table loaded and matches its source."""
    private_dir(home)
    for old in ("source.db", "warehouse.db"):
        for suffix in ("", "-wal", "-shm"):
            (home / f"{old}{suffix}").unlink(missing_ok=True)
    say(f"1/6 sample source: {home / 'source.db'}")
    tables = build_sample(f"sqlite:///{home / 'source.db'}", big_rows=big_rows)
    path = write_sample_config(
        home / "etlctl.toml", f"sqlite:///{home / 'source.db'}", f"sqlite:///{home / 'warehouse.db'}"
    )
    config = load_config(path)
    os.environ[CONFIG_ENV] = str(path)
    say(f"    {len(tables)} tables; config {path}")
    say("2/6 Prefect server (SQLite) ...")
    shutil.rmtree(home / "prefect", ignore_errors=True)
    server = start_server(home / "prefect", ui=True, auth=server_auth(os.environ))
    os.environ[API_ENV] = server.api_url
    if server.auth:  # this process and the workers are its clients
        os.environ[CLIENT_AUTH_ENV] = server.auth
    say(f"    {server.api_url}")
    supervisor = watch = None
    try:
        from flows.deploy import deploy, setup
        from flows.report import print_results
        from flows.run import run_batch

        say("3/6 work pools, limits and deployments")
        for line in [*setup(config), *deploy(config)]:
            say(f"    {line}")
        say(f"4/6 {workers} workers on pool {config.prefect.table_pool} (logs in {home / 'logs'})")
        supervisor = WorkerSupervisor(
            config.prefect.table_pool,
            workers,
            prefix="demo",
            extra_env={API_ENV: server.api_url, CONFIG_ENV: str(path)},
            log_dir=home / "logs",
        )
        watch = _supervise(supervisor)
        say("5/6 orchestrator: one flow run per table, then the two cleanups")
        report = run_batch(config)
        print_results(report.results)
        say("6/6 target equals source, table by table (row count and checksum)")
        mismatched = _compare(config, tables)
        say(
            f"    {len(tables) - len(mismatched)} of {len(tables)} tables identical"
            + (f"; different: {', '.join(mismatched)}" if mismatched else "")
        )
    finally:
        if watch is not None:
            watch.set()
        if supervisor is not None:
            supervisor.stop()
        _finish(server, keep)
    return report.ok and not mismatched


def say(line: str) -> None:
    click.echo(line, err=False)


def _supervise(supervisor: WorkerSupervisor) -> threading.Event:
    """Keep the workers alive from a thread, since the orchestrator needs the main one."""
    done = threading.Event()
    supervisor.start()

    def loop() -> None:
        while not done.wait(1.0):
            supervisor.check()

    threading.Thread(target=loop, name="worker-supervisor", daemon=True).start()
    return done


def _compare(config, tables: list[str]) -> list[str]:
    source = make_engine(config.source_url, "source")
    target = make_engine(config.target_url, "target")
    try:
        return [t for t in tables if fingerprint(source, t) != fingerprint(target, t)]
    finally:
        source.dispose()
        target.dispose()


def _finish(server: ServerHandle, keep: bool) -> None:
    ui = server.api_url.removesuffix("/api")
    if keep:
        say(
            f"Prefect UI: {ui}  (server kept running; stop it with: etlctl --state-dir "
            f"{server.home.parent} server stop)"
        )
        return
    say(f"Prefect UI was at {ui}; stopping the server (use --keep to leave it running)")
    server.stop()
