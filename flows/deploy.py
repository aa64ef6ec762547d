"""`etlctl setup` and `etlctl deploy`: the work pools, limits and four deployments, idempotently.

Deployments use module-path entrypoints (`flows.table.process_table_etl`): every host has the package
installed, so a worker imports the flow from its own installation; there is no shared folder and no
pull step to get wrong.
"""

from __future__ import annotations

import os

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.deployments.runner import EntrypointType
from prefect.exceptions import ObjectAlreadyExists

from flows.cleanup import cleanup_flow1, cleanup_flow2
from flows.config import Config
from flows.fleet.drain_worker import DrainingProcessWorker
from flows.lock import create_lock
from flows.names import DATABASE_TAG, DEPLOYMENT_NAMES, LIMIT_ENV
from flows.orchestrator import main_etl
from flows.table import process_table_etl


def database_limit(config: Config) -> int:
    """$PREFECT_CONCURRENCY_LIMIT wins over the config, as the Makefile's users expect."""
    raw = os.environ.get(LIMIT_ENV)
    return int(raw) if raw else config.prefect.database_limit


def setup(config: Config) -> list[str]:
    """Create the work pools (type `etlctl`: process workers that drain) and the `database` tag limit."""
    pools = dict.fromkeys(
        [config.prefect.table_pool, config.prefect.orchestrator_pool, config.prefect.cleanup_pool]
    )
    template = DrainingProcessWorker.get_default_base_job_template()
    done = []
    with get_client(sync_client=True) as client:
        for pool in pools:
            try:
                client.create_work_pool(
                    WorkPoolCreate(name=pool, type=DrainingProcessWorker.type, base_job_template=template)
                )
                done.append(f"work pool {pool}: created")
            except ObjectAlreadyExists:
                done.append(f"work pool {pool}: exists")
        limit = database_limit(config)
        client.create_concurrency_limit(tag=DATABASE_TAG, concurrency_limit=limit)
        done.append(f"tag concurrency limit {DATABASE_TAG}: {limit}")
    done.append(create_lock())
    return done


def deploy(config: Config) -> list[str]:
    """Create or update the four deployments under their fixed names."""
    pool = config.prefect
    plan = [
        (main_etl, pool.orchestrator_pool),
        (process_table_etl, pool.table_pool),
        (cleanup_flow1, pool.cleanup_pool),
        (cleanup_flow2, pool.cleanup_pool),
    ]
    done = []
    for flow, work_pool in plan:
        deployment = flow.to_deployment(
            name=DEPLOYMENT_NAMES[flow.name],
            work_pool_name=work_pool,
            entrypoint_type=EntrypointType.MODULE_PATH,
            description=(flow.description or "").strip().splitlines()[0],
            # runs of the orchestrator deployment (UI, schedules) never overlap each other;
            # `etlctl run` adds the fleet-wide lock on top
            concurrency_limit=1 if flow is main_etl else None,
        )
        deployment.apply()
        done.append(f"deployment {flow.name}/{deployment.name} -> pool {work_pool}")
    return done
