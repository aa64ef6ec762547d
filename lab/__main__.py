"""`make fleet-demo`: a fleet of hosts in network namespaces on this machine; one dies mid-batch.

    python -m lab              # build, run a batch, kill host w1 mid-run, report, tear down
    python -m lab --no-kill    # the same batch without the failure
    python -m lab --cleanup    # remove what a crashed lab left behind

Run as root from the repository's root (lab/ is not installed with etlctl); exits 0 when every table
arrived intact and the lost ones were rerun on the surviving host, 1 otherwise.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from lab.fleet import BIG_ROWS, Lab
from lab.hosts import serve_postgres
from lab.network import WORKER_HOSTS
from lab.preflight import cleanup
from lab.scenario import run_scenario
from lab.shell import LabError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__.split("\n")[0])
    parser.add_argument("--kill", default="w1", choices=WORKER_HOSTS, help="host to kill mid-batch (w1)")
    parser.add_argument("--no-kill", action="store_true", help="run the batch without killing a host")
    parser.add_argument(
        "--big-rows", type=int, default=BIG_ROWS, help=f"rows in the biggest table ({BIG_ROWS})"
    )
    parser.add_argument("--cleanup", action="store_true", help="remove what a crashed lab left behind")
    parser.add_argument("--serve-postgres", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_postgres:
        serve_postgres(args.serve_postgres)
        return 0

    def say(line: str) -> None:
        print(line, flush=True)

    # SIGTERM (a CI timeout, `kill`) unwinds like Ctrl+C, so the teardown still runs
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        if args.cleanup:
            check = subprocess.run(["ip", "netns", "list"], capture_output=True, check=False)
            if check.returncode != 0:
                raise LabError("`ip netns` is unavailable here")
            cleanup(say)
            return 0
        with Lab(args.big_rows, say) as lab:
            lab.build()
            report = run_scenario(lab, None if args.no_kill else args.kill)
    except LabError as exc:
        say(f"fleet lab: error: {exc}")
        return 1
    say("")
    for line in report.lines():
        say(line)
    say("timings: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in lab.timings.items()))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
