"""Harnesses for experiments on this machine, shared by tests/ and bench/; not installed with etlctl.

    python -m lab          # `make fleet-demo`: hosts in network namespaces, one dies mid-batch (root)

- shell.py     running commands and polling, and LabError
- network.py   the hosts as network namespaces on a bridge: create, enter, kill, delete
- postgres.py  a throwaway PostgreSQL cluster in a folder (also for tests/pg and bench/pg_load)
- memory.py    peak RSS of one table's load in a fresh process (for bench/memory and tests/etl)
- hosts.py     what runs on each host: PostgreSQL and Prefect on `server`, supervisord on `w1`, `w2`
- preflight.py whether this machine can run a lab; --cleanup of a crashed one
- fleet.py     the Lab: build the fleet, the environments its processes get, tear it all down
- scenario.py  a batch with a host killed in the middle, and the Report of what became of each table
- __main__.py  the command line
"""
