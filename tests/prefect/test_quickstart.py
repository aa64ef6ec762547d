"""docs/QUICKSTART_DISTRIBUTED.md, part 1, followed as written: its `sh` blocks are taken from the
file itself and typed, in order, into real shells (one per terminal the guide opens), so the test
breaks when the guide drifts from what the commands do.

What the test cannot do as written is listed, and checked, here: the `sudo` lines (the package
install, a venv under /opt, /etc/etlctl) are skipped and must be exactly SKIPPED; the installed
venv is this checkout's (`/opt/etlctl/venv` is replaced by it); HOME is a temporary directory; and
port 4200 becomes a free port, given to `etlctl server start` through its environment variable
ETLCTL_SERVER_START_PORT (so that variable is tested too).
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import pytest

from flows.fleet.processes import free_port
from tests.polling import until

pytestmark = pytest.mark.prefect

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "QUICKSTART_DISTRIBUTED.md"
VENV = str(Path(sys.executable).parent.parent)
SKIPPED = [
    "sudo apt-get install -y python3 python3-venv",
    "sudo python3 -m venv /opt/etlctl/venv",
    "cd /path/to/etlctl                      # the source folder, with setup.cfg in it",
    "sudo /opt/etlctl/venv/bin/pip install .",
    "sudo mkdir -p /etc/etlctl",
    "sudo nano /etc/etlctl/etlctl.toml       # paste the example below, with your hosts, users and tables",
]
WORKERS_STEP = "7. Start the workers"
STOP_STEP = "11. Stop"
DONE = "__quickstart_block_done__"


def part_one() -> list[tuple[str, list[tuple[str, str | None]]]]:
    """(step title, [(sh block, the output block shown after it or None)]) of part 1, in order."""
    text = GUIDE.read_text(encoding="utf-8").split("\n## Part 2")[0]
    steps = []
    for chunk in re.split(r"^### ", text, flags=re.MULTILINE)[1:]:
        title = chunk.splitlines()[0].strip()
        blocks = re.findall(r"^```(\w*)\n(.*?)^```$", chunk, flags=re.MULTILINE | re.DOTALL)
        pairs = []
        for i, (lang, body) in enumerate(blocks):
            if lang == "sh":
                after = blocks[i + 1] if i + 1 < len(blocks) and blocks[i + 1][0] == "" else None
                pairs.append((body, after[1] if after else None))
        steps.append((title, pairs))
    return steps


class Terminal:
    """One bash reading commands from a pipe, as a person types them; `set -e`: a failing command
    ends it, and the test with it."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.proc = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.send("set -e -o pipefail")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def send(self, commands: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(commands.rstrip("\n") + "\n")
        self.proc.stdin.flush()

    def run(self, block: str, timeout: float) -> list[str]:
        """Type `block`, wait for it to finish; its output lines."""
        self.send(block + f"\necho {DONE}")
        out = []
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                pytest.fail(f"no end after {timeout:.0f} s of:\n{block}\n--- output:\n" + "\n".join(out))
            if line is None:
                pytest.fail(
                    f"the shell exited ({self.proc.wait()}) in:\n{block}\n--- output:\n" + "\n".join(out)
                )
            if line == DONE:
                self.seen += out
                return out
            out.append(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def _as_here(block: str, port: int) -> str:
    kept = [line for line in block.splitlines() if line not in SKIPPED]
    return "\n".join(kept).replace("/opt/etlctl/venv", VENV).replace(":4200", f":{port}")


def _family(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def test_the_quickstart_works_as_written(tmp_path: Path) -> None:
    steps = part_one()
    skipped = [
        line for _, pairs in steps for block, _ in pairs for line in block.splitlines() if line in SKIPPED
    ]
    assert skipped == SKIPPED, (
        "the install lines changed: update SKIPPED and what the test puts in their place"
    )
    titles = [title for title, _ in steps]
    assert WORKERS_STEP in titles and STOP_STEP in titles, titles

    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "ETLCTL_SERVER_START_PORT": str(port),
    }
    first = Terminal(env, home)
    second: subprocess.Popen[str] | None = None
    workers_out = tmp_path / "second-terminal.out"
    family: list[psutil.Process] = []
    outputs: dict[str, list[str]] = {}
    try:
        for title, pairs in steps:
            if title == WORKERS_STEP:
                # The second terminal: a fresh shell, nothing exported from the first one.
                (block, shown), *rest = pairs
                assert not rest, f"step {title} has more than one command block"
                second = subprocess.Popen(
                    ["bash", "--noprofile", "--norc", "-e", "-c", _as_here(block, port)],
                    env=env,
                    cwd=home,
                    stdout=workers_out.open("w"),
                    stderr=subprocess.STDOUT,
                    text=True,
                    start_new_session=True,  # its own terminal: Ctrl+C there reaches it alone
                )
                expected = shown.strip().replace("/home/you", str(home)) if shown else ""
                until(lambda: expected in workers_out.read_text(), 120, "the workers' first line")  # noqa: B023
                continue
            if title == STOP_STEP:
                assert second is not None
                family = _family(second.pid)
                assert len(family) >= 4, "the workers' terminal should run etlctl and 3 workers"
                os.killpg(second.pid, signal.SIGINT)  # Ctrl+C in the workers' terminal
                assert second.wait(timeout=90) == 0, workers_out.read_text()
                assert "drained:" in workers_out.read_text()
            for block, shown in pairs:
                out = first.run(_as_here(block, port), timeout=900)
                outputs.setdefault(title, []).extend(out)
                if shown and "..." not in shown and "<" not in shown and "http" not in shown:
                    assert out[-len(shown.splitlines()) :] == shown.splitlines(), (title, out)

        assert any(line.startswith("etlctl, version") for line in outputs["1. Install"])
        assert "23 tables" in outputs["2. Write the config"]
        assert outputs["3. Check the config"][-1].endswith("tables, about 219471 rows: configuration OK")
        assert (
            f"Prefect server running: http://127.0.0.1:{port}/api"
            in outputs["4. Start the Prefect server"][0]
        )
        assert "23 of 23 tables succeeded" in outputs["8. Run a batch"]
        assert "23 of 23 tables succeeded" in outputs["9. Look at the result"]
        assert outputs[STOP_STEP] == ["server stopped"]
        assert not [
            (p.pid, p.name()) for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE
        ]
    finally:
        if second is not None and second.poll() is None:
            for proc in _family(second.pid):
                os.killpg(os.getpgid(proc.pid), signal.SIGKILL)
            second.wait()
        first.close()
        subprocess.run(
            [f"{VENV}/bin/etlctl", "server", "stop"], env=env, capture_output=True, timeout=60, check=False
        )
