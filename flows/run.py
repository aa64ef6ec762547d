"""`etlctl run` and `etlctl status`: run the orchestrator in this process, then report per table.

The orchestrator runs here rather than on a worker so that cron, a systemd timer or a person at a
terminal gets its exit code: 0 when every table loaded, 1 when any failed. The per-table report
comes from the target's own run history (rows, seconds, worker), joined with Prefect's final state
for tables whose run died before it could record anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prefect import tags

from flows.adopt import settle_leftovers
from flows.config import Config
from flows.errors import NoWorkerError
from flows.etl import state as st
from flows.etl.batch import new_batch_id
from flows.etl.history import batch_results
from flows.interrupt import interruptible
from flows.lock import note_batch
from flows.names import batch_tag
from flows.orchestrator import main_etl


@dataclass
class BatchReport:
    batch_id: str
    ok: bool
    message: str
    results: list[st.TableResult] = field(default_factory=list)


def run_batch(
    config: Config, tables: list[str] | None = None, start_timeout: float | None = None
) -> BatchReport:
    """Run `main-etl-job` here and wait for it; never raises for failed tables, only reports them
    (but does for a pool no worker came to: NoWorkerError, exit 69).

    First settles what a dead or interrupted earlier `etlctl run` left (flows.adopt); a SIGINT or
    SIGTERM during the batch cancels its queued runs (flows.interrupt) and raises BatchInterruptedError.
    """
    batch = new_batch_id()
    note_batch(batch)
    settle_leftovers(config.prefect.poll_seconds, config.prefect.table_pool)
    with interruptible(batch), tags(batch_tag(batch)):
        final = main_etl(
            tables=tables or None, batch_id=batch, start_timeout=start_timeout, return_state=True
        )
    summary = final.result(raise_on_failure=False)
    if isinstance(summary, NoWorkerError):
        raise summary
    prefect_states = summary.get("tables", {}) if isinstance(summary, dict) else {}
    errors = summary.get("errors", {}) if isinstance(summary, dict) else {}  # e.g. over memory_max
    recorded = {r.table: r for r in batch_results(config, batch)}
    results = [
        recorded.get(name)
        or st.TableResult(
            name,
            config.options_for(name).mode,
            batch,
            outcome=state_name.lower(),
            error=errors.get(name) or "no result recorded",
        )
        for name, state_name in sorted(prefect_states.items())
    ] or list(recorded.values())
    for result in results:
        if result.outcome == "success" and prefect_states.get(result.table, "Completed") != "Completed":
            result.outcome = prefect_states[result.table].lower()
    return BatchReport(batch, final.is_completed(), final.message or final.name, results)
