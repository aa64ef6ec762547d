"""Files and directories only their owner can read, whatever the caller's umask.

    private_dir(state / "logs"); with open_private(state / "server.json", "w") as f: ...

The state directory holds the Prefect database (flow parameters, logs), server and worker logs
that name hosts and databases: 0700 directories and 0600 files, like the systemd units' UMask=0077.
Processes etlctl starts (server, workers, their flow runs) get `CHILD_UMASK` for the files they make.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any

CHILD_UMASK = 0o077


def private_dir(path: Path) -> Path:
    """Create `path` and any missing parents as 0700; an existing `path` we own is tightened to 0700.

    Only etlctl's own directories are passed here (never a user's --state-dir itself), so tightening
    an existing one cannot lock anyone out of a shared directory.
    """
    path = Path(path)
    missing = []
    for candidate in (path, *path.parents):
        if candidate.exists():
            break
        missing.append(candidate)
    for directory in reversed(missing):
        directory.mkdir(mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)  # mkdir's mode passes through the umask
    if not missing and path.stat().st_uid == os.geteuid():
        os.chmod(path, 0o700)
    return path


def private_file(path: Path, flags: int = os.O_WRONLY | os.O_CREAT | os.O_APPEND) -> int:
    """Open (creating) `path` as 0600 and return the descriptor; an existing file is tightened too."""
    fd = os.open(path, flags | os.O_CLOEXEC, 0o600)
    os.fchmod(fd, 0o600)
    return fd


def open_private(path: Path, mode: str = "w", encoding: str = "utf-8") -> IO[Any]:
    """`open()` for text that only the owner may read: "w" truncates, "a" appends."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if mode == "w" else os.O_APPEND)
    return os.fdopen(private_file(path, flags), mode, encoding=encoding)


def tighten(paths: list[Path]) -> None:
    """0600 for files etlctl owns that an older version or another umask left readable."""
    for path in paths:
        if path.is_file() and path.stat().st_uid == os.geteuid():
            os.chmod(path, 0o600)
