"""The two cleanup flows the orchestrator runs after every table of a batch has finished.

`cleanup-flow-1` tidies what failed runs left in the target; `cleanup-flow-2` refreshes the
target's statistics and records the batch summary. Both run even when some tables failed.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client

from flows.config import load_config
from flows.etl import maintenance
from flows.etl.engines import make_engine
from flows.fleet.prune import prune_flow_runs
from flows.names import CLEANUP_FLOWS, ETLCTL_FLOWS, batch_tag

HISTORY_DAYS = 90


@flow(name=CLEANUP_FLOWS[0], retries=1, retry_delay_seconds=10, persist_result=False)
def cleanup_flow1(batch_id: str | None = None) -> dict[str, Any]:
    """Settle interrupted incremental loads, prune old history and old flow runs of etlctl's flows
    (`[prefect] keep_flow_runs_days`; this batch's runs stay), checkpoint a SQLite target."""
    logger = get_run_logger()
    config = load_config()
    engine = make_engine(config.target_url, "target")
    try:
        with engine.begin() as conn:
            stuck = maintenance.settle_interrupted(conn, config.target_schema)
            pruned = maintenance.prune_history(conn, config.target_schema, HISTORY_DAYS)
        maintenance.checkpoint(engine)
    finally:
        engine.dispose()
    keep = config.prefect.keep_flow_runs_days
    with get_client(sync_client=True) as client:
        runs = prune_flow_runs(client, keep, ETLCTL_FLOWS, [batch_tag(batch_id)] if batch_id else [])
    logger.info(
        "batch %s: %d interrupted loads settled %s, %d old run rows pruned, "
        "%d flow runs older than %d days deleted",
        batch_id,
        len(stuck),
        stuck,
        pruned,
        runs,
        keep,
    )
    return {"interrupted": stuck, "pruned": pruned, "flow_runs_deleted": runs}


@flow(name=CLEANUP_FLOWS[1], retries=1, retry_delay_seconds=10, persist_result=False)
def cleanup_flow2(
    batch_id: str, tables: list[str] | None = None, failed: list[str] | None = None
) -> dict[str, Any]:
    """ANALYZE the batch's tables and write its summary row to `_etlctl_batches`."""
    logger = get_run_logger()
    config = load_config()
    engine = make_engine(config.target_url, "target")
    try:
        with engine.begin() as conn:
            analyzed = maintenance.analyze(conn, tables or [], config.target_schema)
        with engine.begin() as conn:
            summary = maintenance.record_batch(
                conn, config.target_schema, batch_id, tables or [], failed or []
            )
    finally:
        engine.dispose()
    logger.info("batch %s: analyzed %d tables; %s", batch_id, len(analyzed), summary)
    return {**summary, "finished_at": summary["finished_at"].isoformat(), "analyzed": len(analyzed)}
