"""`etlctl run` shows its batch live on a terminal and as plain lines in a pipe (issue 11)."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time
from collections.abc import Callable
from contextlib import ExitStack

import pytest
from sqlalchemy import create_engine

from flows.etl.table_lock import table_lock
from tests.prefect.conftest import ETLCTL

pytestmark = pytest.mark.prefect

TABLES = ("measurements", "categories", "customers")
HIDE_CURSOR = "\x1b[?25l"  # rich's Live hides the cursor while it redraws


def _run_on_a_terminal(
    env: dict[str, str], *args: str, timeout: float = 240, seen: Callable[[str], None] = lambda _: None
) -> tuple[int, str]:
    """Run etlctl with stdin/stdout/stderr on a pseudo-terminal; its exit code and everything it drew.
    `seen` gets the whole screen so far after each read."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([ETLCTL, *args], env=env, stdin=follower, stdout=follower, stderr=follower)
    os.close(follower)
    out = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 1.0)
            if ready:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # the terminal closed: every writer has gone
                    break
                if not chunk:
                    break
                out += chunk
                seen(out.decode(errors="replace"))
            elif proc.poll() is not None:
                break
        proc.wait(timeout=max(deadline - time.monotonic(), 1))
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(leader)
    return proc.returncode, out.decode(errors="replace")


def test_on_a_terminal_the_batch_is_drawn_live_with_counts_rows_and_elapsed_time(fleet):
    env = {**fleet.env, "COLUMNS": "120", "TERM": "xterm"}
    # The tables load in well under a second: the test holds measurements' per-table lock, so its
    # run waits Running before it reads a row, and lets it go once the view has drawn it running.
    held = ExitStack()
    held.enter_context(
        table_lock(create_engine(fleet.config.target_url), "measurements", fleet.config.target_schema)
    )

    def release(screen: str) -> None:
        if "rows/s" in screen:
            held.close()

    try:
        code, screen = _run_on_a_terminal(env, "run", *TABLES, seen=release)
    finally:
        held.close()
    assert code == 0, screen
    assert HIDE_CURSOR in screen
    assert "elapsed]" in screen  # the live header, which the plain lines never carry
    assert "tables: 3 done (0 failed), 0 running, 0 waiting of 3" in screen
    assert "rows/s" in screen and "measurements" in screen.split("rows/s", 1)[1]  # drawn while running


def test_in_a_pipe_the_same_batch_is_plain_lines_without_escape_codes(fleet):
    proc = fleet.etlctl("run", *TABLES)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "\x1b[" not in proc.stdout
    assert "elapsed]" not in proc.stdout + proc.stderr
    assert "tables: 3 done (0 failed), 0 running, 0 waiting of 3" in proc.stderr
