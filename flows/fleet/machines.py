"""Machine registration: which hosts run workers, and how each is doing.

The inventory lives in Prefect, as one variable per host (`etlctl_machine_<host>`): every host
already reaches the Prefect API, while not every host should hold target-database credentials,
and one variable per host means two hosts registering at once never overwrite each other.
A host's health comes from Prefect too: its workers' heartbeats and its running flow runs
(each labelled with the name of the worker that claimed it).
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import asdict, dataclass
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
from prefect.client.schemas.objects import StateType
from prefect.variables import Variable

from flows.errors import ConfigError
from flows.fleet.flow_runs import all_runs
from flows.fleet.naming import VARIABLE_PREFIX, host_of_worker, run_host, variable_name

TAG = "etlctl-machine"


@dataclass
class Machine:
    """A registered host as recorded in the inventory."""

    host: str
    workers: int
    pool: str
    manager: str
    registered_at: str
    draining: bool = False

    @classmethod
    def now(cls, host: str, workers: int, pool: str, manager: str) -> Machine:
        return cls(host, workers, pool, manager, dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))


@dataclass
class MachineStatus:
    machine: Machine
    live_workers: list[str]
    last_heartbeat: dt.datetime | None
    runs_in_progress: int

    @property
    def verdict(self) -> str:
        """draining: drained by `etlctl machine drain`, however many of its workers are online (the
        live-worker count says that); otherwise healthy: every expected worker online; degraded:
        some; down: none."""
        if self.machine.draining:
            return "draining"
        if not self.live_workers:
            return "down"
        return "degraded" if len(self.live_workers) < self.machine.workers else "healthy"

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self.machine),
            "live_workers": self.live_workers,
            "last_heartbeat": self.last_heartbeat.isoformat() if self.last_heartbeat else None,
            "runs_in_progress": self.runs_in_progress,
            "verdict": self.verdict,
        }


def record(machine: Machine) -> None:
    Variable.set(variable_name(machine.host), asdict(machine), overwrite=True, tags=[TAG])


def lookup(host: str) -> Machine:
    value = Variable.get(variable_name(host))
    if value is None:
        raise ConfigError(f"host {host!r} is not registered (see `etlctl machine ls`)")
    return Machine(**value)


def forget(host: str) -> None:
    Variable.unset(variable_name(host))


def set_draining(host: str, draining: bool) -> Machine:
    machine = lookup(host)
    machine.draining = draining
    record(machine)
    return machine


async def is_draining(client: Any, host: str) -> bool:
    """Asked by every worker at every poll, with the worker's own client (a new client per poll
    cost 20 ms of CPU for its TLS context alone): a drained host's workers claim nothing."""
    variable = await client.read_variable_by_name(variable_name(host))
    value = variable.value if variable is not None else None
    return bool(isinstance(value, dict) and value.get("draining"))


def machines() -> list[Machine]:
    with get_client(sync_client=True) as client:
        found = client.read_variables()
    return sorted(
        (
            Machine(**v.value)
            for v in found
            if v.name.startswith(VARIABLE_PREFIX) and isinstance(v.value, dict)
        ),
        key=lambda m: m.host,
    )


def statuses() -> list[MachineStatus]:
    """Every registered host with its live workers, newest heartbeat and runs in progress."""
    inventory = machines()
    with get_client(sync_client=True) as client:
        workers_by_pool = {
            pool: client.read_workers_for_work_pool(pool) for pool in {m.pool for m in inventory}
        }
        running = all_runs(
            client,
            FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING]))),
        )
    result = []
    for machine in inventory:
        mine = [w for w in workers_by_pool[machine.pool] if host_of_worker(w.name) == machine.host]
        live = sorted(w.name for w in mine if w.status == "ONLINE")
        beats = [w.last_heartbeat_time for w in mine if w.last_heartbeat_time]
        runs = sum(1 for r in running if run_host(r.labels) == machine.host)
        result.append(MachineStatus(machine, live, max(beats) if beats else None, runs))
    return result


def wait_idle(host: str, timeout: float, poll: float = 2.0) -> bool:
    """Poll until `host` has no flow run in progress; False if `timeout` passed first."""
    deadline = time.monotonic() + timeout
    while True:
        busy = [s for s in statuses() if s.machine.host == host and s.runs_in_progress]
        if not busy:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(poll)
