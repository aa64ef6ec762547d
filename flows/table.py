"""The per-table flow: `process-table-etl/process-table-etl-deployment` runs this on a table worker.

The flow is a thin wrapper: the configuration comes from $ETLCTL_CONFIG on the worker's host (so no
secret ever travels as a flow parameter), and the work is `flows.etl.step.run_table`.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.runtime import flow_run as current_run
from prefect.states import Cancelled, State

from flows.config import load_config
from flows.etl.progress import ProgressRecorder
from flows.etl.step import run_table
from flows.fleet.naming import WORKER_ENV
from flows.names import TABLE_FLOW
from flows.rescue import given_up


def worker_name() -> str:
    """The worker that runs this flow run: set by `etlctl workers start`, supervisord and systemd."""
    return os.environ.get(WORKER_ENV) or os.environ.get("PREFECT__WORKER_NAME") or socket.gethostname()


@flow(name=TABLE_FLOW, retries=1, retry_delay_seconds=10, persist_result=False)
def process_table_etl(table: str, batch_id: str | None = None) -> dict[str, Any] | State:
    """Move one table; a failure is retried once, then the run ends Failed with the reason."""
    logger = get_run_logger()
    with get_client(sync_client=True) as client:
        why = given_up(client, current_run.id)
    if why:  # its process started late: the orchestrator has resubmitted the table already
        logger.warning("table %r: this run was given up (%s); not loading", table, why)
        return Cancelled(message=f"started after it was given up ({why})")
    config = load_config()
    worker = worker_name()
    logger.info("table %r on %s: %s -> %s", table, worker, config.source_url, config.target_url)
    record = ProgressRecorder(config, table, batch_id)
    try:
        result = run_table(config, table, batch_id, worker=worker, on_chunk=record)
    finally:
        record.close()
    logger.info(
        "table %r done: %d read, %d written in %.1f s",
        table,
        result.rows_read,
        result.rows_written,
        result.seconds,
    )
    return result.to_dict()
