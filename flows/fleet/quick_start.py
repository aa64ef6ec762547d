"""What a forked table run does differently from `python -m prefect.engine` to reach Running sooner.

Profiled in the forked child (docs/performance.md, "Launch"): before a deployment run's first line,
Prefect's engine starts its suspension observer (a thread with its own event loop, API client and
websocket subscription) and blocks until that is connected: on a loaded host, the largest part of
a run's start (1.8 s of 4.6 s at load 10). The observer only matters once the run is going (it
turns an external suspension request into a pause), so here it connects while the run starts
instead of before. It is Prefect's own observer, unchanged; and since it still polls the run's
state every 10 s whether its websocket is up or not, a request made while it connects is still
seen, as Prefect promises for a dropped connection.

The engine tells the worker how the run ended (its outcome receipt on Prefect's control channel,
which frees the worker's slot: flows.fleet.launcher) only once it has stopped its heartbeat and
suspension-observer threads, a second or more after the final state is recorded. Here it tells
the worker as soon as the final state is recorded; the later report is then a no-op (Prefect sends
one receipt per attempt). A paused run or one awaiting a retry is not final and reports nothing.

Applied once in the fork server, before any fork: flows.fleet.forkserver.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import threading
from collections.abc import Callable, Iterator
from typing import Any
from uuid import UUID

import prefect.flow_engine
from prefect._flow_run_suspension import observe_flow_run_suspension

CONNECT_WAIT = 2.0  # at the end of a run: an observer still connecting is left to the process exit


@contextlib.contextmanager
def observe_suspension_in_background(flow_run_id: UUID, request: Any) -> Iterator[None]:
    """Prefect's `observe_flow_run_suspension`, entered on a thread so the run need not wait."""
    observer = observe_flow_run_suspension(flow_run_id, request)
    context = contextvars.copy_context()
    entering = threading.Thread(target=context.run, args=(observer.__enter__,), daemon=True)
    entering.start()
    try:
        yield
    finally:
        entering.join(CONNECT_WAIT)
        if not entering.is_alive():
            observer.__exit__(None, None, None)


def report_final_state_at_once(capture: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
    """Wrap the engine's `_capture_state_report` so a final state is reported when it is recorded."""

    @functools.wraps(capture)
    def capture_and_report(engine: Any, state: Any) -> None:
        capture(engine, state)
        if state.is_final() and engine._attempt_conclusion is not None:
            engine._report_attempt_conclusion()

    return capture_and_report


def apply() -> None:
    """Make the engine, in this process and every child forked from it, start and end sooner."""
    prefect.flow_engine.observe_flow_run_suspension = observe_suspension_in_background
    engine = prefect.flow_engine.BaseFlowRunEngine
    engine._capture_state_report = report_final_state_at_once(engine._capture_state_report)
