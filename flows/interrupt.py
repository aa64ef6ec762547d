"""Ctrl+C or SIGTERM of `etlctl run`: stop the batch cleanly instead of leaving it headless.

    with interruptible(batch_id):
        main_etl(...)

What an interrupted batch does (docs/operations.md): its queued runs (tables and cleanups not yet
started) are cancelled, so nothing new starts; tables already loading are left to finish, because
each load is one transaction (full) or resumable chunk by chunk (incremental) and killing it only
throws work away; the orchestrator's own run is marked Cancelled. The next `etlctl run` waits for
those tables before loading them again (flows.adopt). The command exits 130 (SIGINT) or 143 (SIGTERM).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterTags
from prefect.states import Cancelled

from flows.adopt import cancel_queued, running_of
from flows.errors import BatchInterruptedError
from flows.names import ORCHESTRATOR_FLOW, batch_tag

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _Interrupt(KeyboardInterrupt):
    """Raised in the main thread by a signal; Prefect's engine treats it as Ctrl+C."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise(signum: int, _frame: object) -> None:
    raise _Interrupt(signum)


@contextmanager
def interruptible(batch: str) -> Iterator[None]:
    """Run the block; on SIGINT or SIGTERM settle the batch and raise BatchInterruptedError."""
    previous = {sig: signal.signal(sig, _raise) for sig in SIGNALS}
    try:
        yield
    except _Interrupt as exc:
        for sig in SIGNALS:  # a few API calls settle the batch; a second signal must not cut them
            signal.signal(sig, signal.SIG_IGN)
        raise BatchInterruptedError(settle(batch, exc.signum), 128 + exc.signum) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def settle(batch: str, signum: int) -> str:
    """Cancel the batch's queued runs and its orchestrator run; one line saying what is left."""
    why = f"`etlctl run` got {signal.Signals(signum).name}"
    with get_client(sync_client=True) as client:
        cancelled = cancel_queued(client, batch, why)
        for run in client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[ORCHESTRATOR_FLOW])),
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[batch_tag(batch)])),
            limit=10,
        ):
            if run.state is None or not run.state.is_final() or run.state.is_crashed():
                client.set_flow_run_state(run.id, Cancelled(message=why), force=True)
        running = sorted(run.name for run in running_of(client, batch))
    left = (
        f"{len(running)} still loading, left to finish: {', '.join(running)}" if running else "none loading"
    )
    return f"batch {batch} interrupted ({why}): {len(cancelled)} queued runs cancelled; {left}"
