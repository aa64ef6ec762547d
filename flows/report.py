"""What the CLI prints: plans and per-table results as aligned text, or JSON lines for scripts."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

import click

from flows.config import Config
from flows.etl.history import recent_batches
from flows.etl.plan import checked_plans
from flows.etl.state import TableResult


def table_text(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Columns padded to their widest cell; numeric columns right-aligned so they compare at a glance."""
    rows = list(rows)
    numeric = [
        all(isinstance(r[i], int | float) for r in rows if r[i] is not None) for i in range(len(header))
    ]
    cells = [list(header)] + [["" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row: list[str], align: bool) -> str:
        padded = (
            c.rjust(w) if align and num else c.ljust(w)
            for c, w, num in zip(row, widths, numeric, strict=True)
        )
        return "  ".join(padded).rstrip()

    return "\n".join([line(cells[0], False), *(line(r, True) for r in cells[1:])])


def print_plan(config: Config) -> None:
    """`etlctl config check`: connections first (exit 3 if one fails), then the plan."""
    plans = checked_plans(config, estimate=True, values=True)
    click.echo(f"config  {config.path}")
    click.echo(f"source  {config.source_url}")
    click.echo(f"target  {config.target_url}")
    click.echo("")
    rows = [(p.name, p.options.mode, p.options.cursor or "", ",".join(p.primary_key), p.rows) for p in plans]
    click.echo(table_text(("table", "mode", "cursor", "key", "rows"), rows))
    total = sum(p.rows or 0 for p in plans)
    click.echo(f"\n{len(plans)} tables, about {total} rows: configuration OK")


def print_results(results: Sequence[TableResult]) -> None:
    rows = [
        (
            r.table,
            r.mode,
            r.outcome,
            r.rows_read,
            r.rows_written,
            round(r.seconds, 2),
            r.worker or "",
            r.error or "",
        )
        for r in results
    ]
    header = ("table", "mode", "outcome", "read", "written", "seconds", "worker", "error")
    click.echo(table_text(header, rows))
    failed = [r.table for r in results if r.outcome != "success"]
    summary = f"{len(results) - len(failed)} of {len(results)} tables succeeded"
    click.echo(summary + (f"; failed: {', '.join(failed)}" if failed else ""))


def print_status(config: Config, limit: int) -> None:
    """`etlctl status`: one line per recent batch, then the latest batch table by table."""
    batches = recent_batches(config, limit)
    if not batches:
        click.echo(f"no batch has run against {config.target_url} yet")
        return
    rows = []
    for batch_id, results in batches:
        failed = [r.table for r in results if r.outcome != "success"]
        rows.append(
            (batch_id, len(results), len(failed), sum(r.rows_written for r in results), ", ".join(failed))
        )
    click.echo(table_text(("batch", "tables", "failed", "rows written", "failed tables"), rows))
    latest, results = batches[0]
    click.echo(f"\nbatch {latest}:")
    print_results(results)


def print_machines(as_json: bool) -> None:
    """`etlctl machine ls`."""
    from flows.fleet.machines import statuses

    found = statuses()
    if as_json:
        click.echo(json.dumps([s.to_dict() for s in found], indent=2))
        return
    rows = [
        (
            s.machine.host,
            s.verdict,
            s.machine.workers,
            len(s.live_workers),
            s.runs_in_progress,
            s.last_heartbeat.isoformat(timespec="seconds") if s.last_heartbeat else "never",
            s.machine.pool,
            s.machine.manager,
        )
        for s in found
    ]
    header = ("host", "health", "workers", "live", "running", "last heartbeat", "pool", "manager")
    click.echo(table_text(header, rows) if rows else "no machine is registered")
