"""The names users type and every part of the fleet agrees on, defined once (no Prefect import).

    prefect deployment run main-etl-job/main-etl-deployment

The flows take their names from here, `etlctl deploy` creates the deployments under them, and the
orchestrator submits to them, so a rename cannot leave one side behind.
"""

from __future__ import annotations

ORCHESTRATOR_FLOW = "main-etl-job"
TABLE_FLOW = "process-table-etl"
CLEANUP_FLOWS = ("cleanup-flow-1", "cleanup-flow-2")
DEPLOYMENT_NAMES = {
    ORCHESTRATOR_FLOW: "main-etl-deployment",
    TABLE_FLOW: "process-table-etl-deployment",
    CLEANUP_FLOWS[0]: "cleanup-flow-1-deployment",
    CLEANUP_FLOWS[1]: "cleanup-flow-2-deployment",
}
DATABASE_TAG = "database"  # tag concurrency limit on table tasks of the single-flow variant
LIMIT_ENV = "PREFECT_CONCURRENCY_LIMIT"  # overrides [prefect] database_limit, as the Makefile's users expect
LOCK_NAME = "etlctl-orchestrator"  # global concurrency limit: one orchestrator run in the whole fleet


ETLCTL_FLOWS = (ORCHESTRATOR_FLOW, TABLE_FLOW, *CLEANUP_FLOWS)


def batch_tag(batch_id: str) -> str:
    """The tag on every flow run of a batch: filter on it in the Prefect UI or `prefect flow-run ls`."""
    return f"etl-batch:{batch_id}"


def deployment(flow_name: str) -> str:
    """`flow/deployment`, as `run_deployment` and `prefect deployment run` take it."""
    return f"{flow_name}/{DEPLOYMENT_NAMES[flow_name]}"
