"""Running a command to completion and polling for a state: what every part of the lab does.

    sh(["ip", "link", "show"])                            # CompletedProcess, or LabError naming it
    until(lambda: pid_file.exists(), 20, "a pid file")    # the first truthy result, or LabError

Failures are LabError, with a message saying where; `python -m lab` prints it and exits 1.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

Say = Callable[[str], None]


class LabError(RuntimeError):
    """The lab could not be built or the scenario could not finish; the message says where."""


def sh(
    command: Sequence[str | os.PathLike[str]], env: dict[str, str] | None = None, timeout: float = 180.0
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion; LabError with the last line of its output if it fails."""
    argv = [str(part) for part in command]
    try:
        done = subprocess.run(
            argv,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise LabError(f"`{' '.join(argv)}` did not finish within {timeout:.0f} s") from None
    if done.returncode != 0:
        detail = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        raise LabError(f"`{' '.join(argv)}` exited {done.returncode}: {detail}")
    return done


def until(
    check: Callable[[], T],
    timeout: float,
    what: str,
    interval: float = 0.5,
    error: Callable[[str], BaseException] = LabError,
) -> T:
    """The first truthy result of `check`, polled against a deadline; `error` naming `what` after.

    The test suite's `tests/polling.py` uses this loop too, with a test failure as the error.
    """
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise error(f"no {what} after {timeout:.0f} s")
        time.sleep(interval)
    return result


def read(path: Path) -> str:
    """The file's text, stripped; empty if it is not there (yet)."""
    with contextlib.suppress(OSError):
        return path.read_text().strip()
    return ""


def tail(path: Path, lines: int = 40) -> str:
    return "\n".join(read(path).splitlines()[-lines:])
