"""How a waiting batch shows itself: a live table on a terminal, plain log lines anywhere else.

    with plain_or_live("tables", logger) as view:   # live when stdout is a terminal
        view.update(Snapshot(...))                   # once per poll

The live view (rich, which ships with Prefect) redraws in place: tables done / running / waiting /
failed, the rows and rows/s of each running table, the longest-running first, and an ETA. Under
cron or systemd (stdout not a terminal) the same facts go out as log lines: one when the counts
change, and the running tables' rows every `ROWS_EVERY` seconds, so a journal stays readable.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

ROWS_EVERY = 30.0  # seconds between two plain lines of per-table rows
SHOWN = 8  # running tables listed, longest-running first
Logger = logging.Logger | logging.LoggerAdapter


@dataclass(frozen=True)
class Snapshot:
    """One poll's view of a batch. `rows` maps a running table to (rows read, rows/s)."""

    total: int
    done: int
    failed: int
    waiting: int
    running: Mapping[str, float]  # table -> seconds running
    rows: Mapping[str, tuple[int, float]] = field(default_factory=dict)
    seconds_per_table: Sequence[float] = ()  # durations of the tables done so far
    elapsed: float = 0.0

    def counts(self) -> tuple[int, int, int, int]:
        return self.done, self.failed, len(self.running), self.waiting

    def slowest(self) -> list[str]:
        return sorted(self.running, key=lambda t: -self.running[t])[:SHOWN]


def eta_seconds(snap: Snapshot) -> float | None:
    """Seconds left, from the mean time of the tables done so far; None before the first is done.

    The work left (each waiting table a mean one, each running one what the mean leaves of it) is
    spread over as many slots as are running now (at least one).
    """
    if not snap.seconds_per_table:
        return None
    mean = sum(snap.seconds_per_table) / len(snap.seconds_per_table)
    left = snap.waiting * mean + sum(max(mean - s, 0.0) for s in snap.running.values())
    return left / max(len(snap.running), 1)


def summary_line(label: str, snap: Snapshot) -> str:
    eta = eta_seconds(snap)
    return (
        f"{label}: {snap.done} done ({snap.failed} failed), {len(snap.running)} running, "
        f"{snap.waiting} waiting of {snap.total}" + (f", ETA {_clock(eta)}" if eta is not None else "")
    )


def rows_line(label: str, snap: Snapshot) -> str:
    parts = []
    for table in snap.slowest():
        rows, rate = snap.rows.get(table, (0, 0.0))
        parts.append(f"{table} {rows} rows ({rate:.0f}/s, {_clock(snap.running[table])})")
    return f"{label} running: " + "; ".join(parts)


class BatchView(Protocol):
    def update(self, snap: Snapshot) -> None: ...


class LineView:
    """Log lines: the counts when they change, the running tables' rows every ROWS_EVERY seconds."""

    def __init__(self, label: str, logger: Logger) -> None:
        self.label, self.logger = label, logger
        self.last: tuple[int, int, int, int] | None = None
        self.rows_at = time.monotonic()

    def update(self, snap: Snapshot) -> None:
        if snap.counts() != self.last:
            self.last = snap.counts()
            self.logger.info("%s", summary_line(self.label, snap))
        if snap.running and time.monotonic() - self.rows_at >= ROWS_EVERY:
            self.rows_at = time.monotonic()
            self.logger.info("%s", rows_line(self.label, snap))


class LiveView:
    """A table redrawn in place on the terminal, at every poll."""

    def __init__(self, label: str, live: Live) -> None:
        self.label, self.live = label, live

    def update(self, snap: Snapshot) -> None:
        self.live.update(render(self.label, snap), refresh=True)


def render(label: str, snap: Snapshot) -> Group:
    table = Table(box=None, pad_edge=False)
    for column in ("running", "rows", "rows/s", "for"):
        table.add_column(column, justify="left" if column == "running" else "right")
    for name in snap.slowest():
        rows, rate = snap.rows.get(name, (0, 0.0))
        table.add_row(name, f"{rows:,}", f"{rate:,.0f}", _clock(snap.running[name]))
    head = Text(summary_line(label, snap) + f"  [{_clock(snap.elapsed)} elapsed]", style="bold")
    return Group(head, table) if snap.running else Group(head)


@contextmanager
def plain_or_live(label: str, logger: Logger, terminal: bool | None = None) -> Iterator[BatchView]:
    """A LiveView when stdout is a terminal, else a LineView; the live one ends with its last frame."""
    if not (sys.stdout.isatty() if terminal is None else terminal):
        yield LineView(label, logger)
        return
    console = Console(file=sys.stdout)
    with Live(console=console, auto_refresh=False, transient=False) as live, _logs_above(live.console):
        yield LiveView(label, live)


@contextmanager
def _logs_above(console: Console) -> Iterator[None]:
    """Prefect's console handlers print through the live console while it draws, so their lines go
    above the view instead of through it (they hold the stderr of their set-up, not Live's)."""
    handlers = [
        h
        for logger in [logging.getLogger(), *_prefect_loggers()]
        for h in logger.handlers
        if isinstance(getattr(h, "console", None), Console) and h.console.is_terminal
    ]
    saved = [h.console for h in handlers]
    for handler in handlers:
        handler.console = console
    try:
        yield
    finally:
        for handler, own in zip(handlers, saved, strict=True):
            handler.console = own


def _prefect_loggers() -> list[logging.Logger]:
    names = [n for n in logging.root.manager.loggerDict if n == "prefect" or n.startswith("prefect.")]
    return [logging.getLogger(n) for n in names]


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
