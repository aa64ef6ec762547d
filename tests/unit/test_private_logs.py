"""State files and logs are private whatever the umask, and logs rotate by size with a bounded
number of old files: a real `python -m flows.fleet.logpipe` reader fed through its pipe."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import psutil
import pytest

from flows.fleet.logpipe import BACKUPS_ENV, MAX_BYTES_ENV, start_logpipe
from flows.fleet.private import open_private, private_dir


@pytest.fixture(params=[0o022, 0o000], ids=["umask-022", "umask-000"])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_state_files_are_private(tmp_path, umask):
    state = private_dir(tmp_path / "a" / "state" / "prefect")
    assert _mode(tmp_path / "a") == _mode(tmp_path / "a" / "state") == _mode(state) == 0o700
    with open_private(state / "server.json") as file:
        file.write("{}")
    assert _mode(state / "server.json") == 0o600
    loose = state / "old.log"
    loose.write_text("x")
    os.chmod(loose, 0o644)
    with open_private(loose, "a"):
        pass
    assert _mode(loose) == 0o600 and loose.read_text() == "x"


def test_a_log_rotates_by_size_and_keeps_a_bounded_number_of_files(tmp_path, umask, monkeypatch):
    monkeypatch.setenv(MAX_BYTES_ENV, "2000")
    monkeypatch.setenv(BACKUPS_ENV, "2")
    log = tmp_path / "logs" / "worker.log"
    private_dir(log.parent)
    before = set(psutil.Process(os.getpid()).children())
    fd, reader = start_logpipe(log)
    lines = [f"line {i:05d} {'x' * 80}\n" for i in range(200)]  # ~18 KB: rotates about 9 times
    writer = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdout.write(sys.stdin.read())"],
        stdin=subprocess.PIPE,
        stdout=fd,
    )
    os.close(fd)
    writer.communicate("".join(lines).encode())
    assert reader.wait(timeout=30) == 0  # the reader ends when its last writer has gone
    files = sorted(p.name for p in log.parent.iterdir())
    assert files == ["worker.log", "worker.log.1", "worker.log.2"]
    for path in log.parent.iterdir():
        assert _mode(path) == 0o600 and path.stat().st_size <= 2000
    kept = "".join((log.parent / name).read_text() for name in ["worker.log.2", "worker.log.1", "worker.log"])
    assert kept.endswith(lines[-1]) and kept == "".join(lines[-len(kept.splitlines()) :])
    assert set(psutil.Process(os.getpid()).children()) <= before  # the reader and the writer are gone
