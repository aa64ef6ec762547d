"""etlctl: move tables from a source database to a target database, one Prefect flow run per table.

`flows.etl` holds the table step (no Prefect import); the flow modules (`table`, `orchestrator`,
`cleanup`, `prefect_flow`) are thin Prefect wrappers around it; `flows.fleet` runs servers and workers.
"""
