"""Size-rotated logs for the processes etlctl starts by hand (the server, `etlctl workers start`).

    fd, reader = start_logpipe(state / "logs" / "host-01.log")  # fd: Popen(stdout=fd), then close

The process writes into a pipe; a small reader, `python -m flows.fleet.logpipe LOG`, copies each
line into LOG (0600) and, when the next line would take LOG over ETLCTL_LOG_MAX_BYTES (default
10 MiB), renames LOG to LOG.1 (LOG.1 to LOG.2, ...; at most ETLCTL_LOG_BACKUPS old files, default
5, the oldest deleted). The reader has a session of its own, ignores SIGINT/SIGTERM/SIGHUP, and ends
when every writer has closed the pipe, so it outlives `etlctl server start` and never loses the
last lines of a process that is stopping. It imports only the standard library.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

MAX_BYTES_ENV = "ETLCTL_LOG_MAX_BYTES"
BACKUPS_ENV = "ETLCTL_LOG_BACKUPS"
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_BACKUPS = 5
_LINE_LIMIT = 64 * 1024  # a longer "line" is written in pieces


def start_logpipe(path: Path) -> tuple[int, subprocess.Popen[bytes]]:
    """Start the reader for `path`; returns the write end of its pipe, which the caller closes once
    the writing process has been started with it, and the reader."""
    read_end, write_end = os.pipe()
    try:
        reader = subprocess.Popen(
            [sys.executable, "-m", "flows.fleet.logpipe", str(path)],
            stdin=read_end,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            umask=0o077,
        )
    except BaseException:
        os.close(write_end)
        raise
    finally:
        os.close(read_end)
    return write_end, reader


class RotatingWriter:
    """Appends lines to `path`, rotating by size; keeps at most `backups` old files."""

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.path = Path(path)
        self.max_bytes = max(max_bytes, 1)
        self.backups = max(backups, 0)
        self._fd = self._open()
        self.size = os.fstat(self._fd).st_size

    def write(self, data: bytes) -> None:
        if self.size and self.size + len(data) > self.max_bytes:
            self.rotate()
        os.write(self._fd, data)
        self.size += len(data)

    def rotate(self) -> None:
        os.close(self._fd)
        if self.backups:
            for index in range(self.backups - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{index}")
                if older.exists():
                    os.replace(older, self.path.with_name(f"{self.path.name}.{index + 1}"))
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink(missing_ok=True)
        self._fd = self._open()
        self.size = 0

    def close(self) -> None:
        os.close(self._fd)

    def _open(self) -> int:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        os.fchmod(fd, 0o600)
        return fd


def _int_env(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def main(argv: list[str]) -> int:
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    writer = RotatingWriter(
        Path(argv[0]),
        _int_env(MAX_BYTES_ENV, DEFAULT_MAX_BYTES),
        _int_env(BACKUPS_ENV, DEFAULT_BACKUPS),
    )
    source = sys.stdin.buffer
    while line := source.readline(_LINE_LIMIT):
        writer.write(line)
    writer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
